"""lab_llm.auth.watched_file: private YAML written atomically and read again when it changes."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from lab_llm.auth.watched_file import WatchedYamlFile, write_private_yaml


def test_written_file_is_private_and_replaces_the_old_one_whole(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "keys.yaml"
    write_private_yaml(path, {"keys": [{"kid": "k1"}]})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    watched = WatchedYamlFile(path, lambda document: document)
    assert watched.get() == {"keys": [{"kid": "k1"}]}
    write_private_yaml(path, {"keys": [{"kid": "k2"}, {"kid": "k1"}]})
    assert watched.get() == {"keys": [{"kid": "k2"}, {"kid": "k1"}]}
    assert sorted(p.name for p in path.parent.iterdir()) == ["keys.yaml"]  # no temporary file left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    write_private_yaml(path, {"active_kid": "k1"})

    class Unrepresentable:
        pass

    with pytest.raises(yaml.representer.RepresenterError):
        write_private_yaml(path, {"active_kid": Unrepresentable()})
    assert yaml.safe_load(path.read_text()) == {"active_kid": "k1"}
    assert [p.name for p in tmp_path.iterdir()] == ["keys.yaml"]
