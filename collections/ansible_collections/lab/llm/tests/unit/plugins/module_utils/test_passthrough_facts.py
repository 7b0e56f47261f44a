"""module_utils/passthrough_facts.py on generated sysfs/procfs trees: what makes it fail, and that it only reads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ansible_collections.lab.llm.plugins.module_utils.passthrough_facts import FactsError, gather
from tests.fixtures.sysfs.sysfs_tree import PRESETS, build_tree


def snapshot(root: Path) -> dict[str, tuple[int, int, str | None]]:
    """Every path below root with its mode, mtime and link target: what a write would change."""
    seen = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            seen[path] = (info.st_mode, info.st_mtime_ns, os.readlink(path) if os.path.islink(path) else None)
    return seen


def test_a_root_without_proc_and_sys_fails_naming_it(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    with pytest.raises(FactsError, match=r"^root='.*/nothing' has no proc/ and sys/ directories to read$"):
        gather(str(tmp_path / "nothing"), str(tmp_path))
    with pytest.raises(FactsError, match=r"has no proc/ and sys/"):
        gather(str(tmp_path), str(tmp_path))


def test_an_unreadable_device_fails_naming_root_and_the_file(tmp_path: Path) -> None:
    root = build_tree(tmp_path, PRESETS["intel-3090-clean"])
    devices = root / "sys" / "bus" / "pci" / "devices"
    gpu = next(path for path in devices.iterdir() if (path / "vendor").read_text().strip() == "0x10de")
    (gpu / "class").unlink()
    with pytest.raises(FactsError) as error:
        gather(str(root), str(root))
    assert str(error.value).startswith("cannot read PCI/IOMMU state below root=%r: " % str(root))
    assert str(gpu / "class") in str(error.value)


def test_it_reads_without_writing_and_reads_the_same_twice(tmp_path: Path) -> None:
    root = build_tree(tmp_path, PRESETS["intel-3090-clean"])
    before = snapshot(root)
    first = gather(str(root), str(root))
    assert snapshot(root) == before
    assert gather(str(root), str(root)) == first
    assert [gpu["address"] for gpu in first["gpus"]] == ["0000:01:00"]
    assert sorted(first) == ["boot_loader", "cpu_vendor", "gpus", "iommu", "vfio_pci_ids_options"]
