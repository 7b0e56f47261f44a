"""Private YAML files (the auth store, the signing keys): written atomically, read again whenever they change on
disk (Kubernetes updates mounted Secrets by swapping a symlink)."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

import yaml

Parsed = TypeVar("Parsed")


def private_yaml_text(document: object) -> str:
    """``document`` as `write_private_yaml` writes it (the same bytes, so copies compare equal)."""
    return yaml.safe_dump(document, sort_keys=False)


def write_private_yaml(path: Path, document: object) -> None:
    """Replace ``path`` with ``document`` as YAML, readable by its owner only (mode 0600), atomically: a reader
    (WatchedYamlFile, another process) sees the old file or the new one, never a part. The temporary file has a
    unique name beside ``path`` and is removed when writing fails. Callers that read, change and write serialise
    themselves (AuthStore holds a lock file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(private_yaml_text(document))
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class WatchedYamlFile(Generic[Parsed]):
    """Keeps the parsed content of a YAML file, re-parsing when its stat signature changes."""

    def __init__(self, path: Path, parse: Callable[[object], Parsed]) -> None:
        self.path = path
        self._parse = parse
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._value: Parsed | None = None

    def _current_signature(self) -> tuple[int, int, int]:
        stat = os.stat(self.path)
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def get(self) -> Parsed:
        signature = self._current_signature()
        if signature != self._signature or self._value is None:
            with self._lock:
                if signature != self._signature or self._value is None:
                    text = self.path.read_text(encoding="utf-8")
                    self._value = self._parse(yaml.safe_load(text) or {})
                    self._signature = signature
        return self._value
