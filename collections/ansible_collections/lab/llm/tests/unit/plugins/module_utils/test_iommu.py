"""CPU vendor, IOMMU command-line flags and group checks."""

from __future__ import annotations

from ansible_collections.lab.llm.plugins.module_utils.iommu import (
    check_card_group,
    cmdline_flags,
    cpu_vendor,
    read_iommu_state,
)
from ansible_collections.lab.llm.plugins.module_utils.pci import nvidia_gpu_cards, read_all_functions
from tests.fixtures.sysfs.sysfs_tree import PRESETS, build_tree


def test_cmdline_flags_keep_the_last_value_and_ignore_lookalikes():
    flags = cmdline_flags("BOOT_IMAGE=/vmlinuz iommu=soft intel_iommu=on iommu=pt amd_iommu_dump iommu.strict=1")
    assert flags == {"iommu": "pt", "intel_iommu": "on"}


def test_cpu_vendor_unknown_without_cpuinfo(tmp_path):
    assert cpu_vendor(str(tmp_path)) == "unknown"
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text("processor\t: 0\nvendor_id\t: HygonGenuine\n")
    assert cpu_vendor(str(tmp_path)) == "unknown"


def test_iommu_state_without_sysfs_is_inactive(tmp_path):
    state = read_iommu_state(str(tmp_path))
    assert not state.active
    assert state.as_dict() == {
        "active": False,
        "group_count": 0,
        "units": [],
        "cmdline_flags": {},
        "passthrough_mode": False,
    }


def test_group_check_lists_only_foreign_endpoints(tmp_path):
    root = str(build_tree(tmp_path, PRESETS["intel-3060-shared"]))
    functions = read_all_functions(root)
    check = check_card_group(root, nvidia_gpu_cards(functions)[0], functions)
    assert check.group == 11
    assert check.members == ["0000:00:1c.0", "0000:02:00.0", "0000:02:00.1", "0000:03:00.0"]
    assert [f.address for f in check.foreign] == ["0000:03:00.0"]
    assert not check.clean
