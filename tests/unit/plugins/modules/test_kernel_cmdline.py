"""lab.llm.kernel_cmdline on GRUB and systemd-boot hosts built from fixture trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.lab.llm.plugins.modules import kernel_cmdline
from tests.fixtures.sysfs.sysfs_tree import PRESETS, after_boot, build_tree
from tests.unit.plugins.modules.module_runner import ModuleExit
from tests.unit.plugins.modules.module_runner import run_module as run_module_main

PROXMOX_GRUB = 'GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n'


def run_module(monkeypatch: pytest.MonkeyPatch, args: dict) -> ModuleExit:
    return run_module_main(monkeypatch, kernel_cmdline.main, args)


def grub_host(tmp_path: Path, preset: str = "intel-3090-clean", grub: str | None = PROXMOX_GRUB) -> Path:
    root = build_tree(tmp_path, PRESETS[preset])
    grub_defaults = root / "etc" / "default" / "grub"
    if grub is None:
        grub_defaults.unlink()
    else:
        grub_defaults.write_text(grub)
    return root


def args_for(root: Path, **extra) -> dict:
    return {"root": str(root), "config_root": str(root), "_ansible_diff": True, **extra}


def test_grub_host_gets_params_then_stays_unchanged(monkeypatch, tmp_path):
    root = grub_host(tmp_path)
    grub = root / "etc" / "default" / "grub"
    grub.chmod(0o640)

    first = run_module(monkeypatch, args_for(root, params=["intel_iommu=on", "iommu=pt"]))
    assert not first.failed, first.result
    assert first.result["changed"] is True
    assert first.result["boot_loader"] == "grub"
    assert first.result["path"] == "/etc/default/grub"
    assert first.result["configured_before"] == ["quiet"]
    assert first.result["configured_after"] == ["quiet", "intel_iommu=on", "iommu=pt"]
    assert first.result["refresh_needed"] is True
    assert first.result["refresh_command"] == ["update-grub"]
    assert first.result["reboot_needed"] is True
    assert first.result["diff"] == {
        "before": PROXMOX_GRUB,
        "after": PROXMOX_GRUB.replace('"quiet"', '"quiet intel_iommu=on iommu=pt"'),
        "before_header": "/etc/default/grub",
        "after_header": "/etc/default/grub",
    }
    assert grub.read_text() == first.result["diff"]["after"]
    assert grub.stat().st_mode & 0o777 == 0o640

    second = run_module(monkeypatch, args_for(root, params=["intel_iommu=on", "iommu=pt"]))
    assert second.result["changed"] is False
    assert second.result["refresh_needed"] is False
    assert "diff" not in second.result
    # Still not running with them: the caller must know a reboot is outstanding.
    assert second.result["reboot_needed"] is True


def test_check_mode_reports_but_does_not_write(monkeypatch, tmp_path):
    root = grub_host(tmp_path)
    outcome = run_module(monkeypatch, args_for(root, params=["iommu=pt"], _ansible_check_mode=True))
    assert outcome.result["changed"] is True
    assert outcome.result["configured_after"] == ["quiet", "iommu=pt"]
    assert (root / "etc" / "default" / "grub").read_text() == PROXMOX_GRUB


def test_running_kernel_with_params_needs_no_reboot(monkeypatch, tmp_path):
    root = build_tree(tmp_path, after_boot(PRESETS["intel-3090-clean"], "quiet intel_iommu=on iommu=pt", set()))
    (root / "etc" / "default" / "grub").write_text(PROXMOX_GRUB.replace('"quiet"', '"quiet intel_iommu=on iommu=pt"'))
    outcome = run_module(monkeypatch, args_for(root, params=["intel_iommu=on", "iommu=pt"]))
    assert outcome.result["changed"] is False
    assert outcome.result["running_cmdline_matches"] is True
    assert outcome.result["reboot_needed"] is False


def test_systemd_boot_host_edits_etc_kernel_cmdline(monkeypatch, tmp_path):
    root = build_tree(tmp_path, PRESETS["amd-zfs-systemd-boot"])
    outcome = run_module(monkeypatch, args_for(root, params=["iommu=pt"]))

    assert outcome.result["changed"] is True
    assert outcome.result["boot_loader"] == "systemd-boot"
    assert outcome.result["path"] == "/etc/kernel/cmdline"
    assert outcome.result["refresh_command"] == ["proxmox-boot-tool", "refresh"]
    assert (root / "etc" / "kernel" / "cmdline").read_text() == "root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt\n"
    assert not (root / "etc" / "default" / "grub").exists()
    assert run_module(monkeypatch, args_for(root, params=["iommu=pt"])).result["changed"] is False


def test_systemd_boot_without_etc_kernel_cmdline_fails_and_creates_nothing(monkeypatch, tmp_path):
    root = build_tree(tmp_path, PRESETS["amd-zfs-systemd-boot"])
    (root / "etc" / "kernel" / "cmdline").unlink()
    outcome = run_module(monkeypatch, args_for(root, params=["iommu=pt"], boot_loader="systemd-boot"))
    assert outcome.failed
    assert "/etc/kernel/cmdline does not exist" in outcome.result["msg"]
    assert not (root / "etc" / "kernel" / "cmdline").exists()


def test_grub_dropin_is_created_extended_and_removed(monkeypatch, tmp_path):
    root = grub_host(tmp_path)
    dropin = root / "etc" / "default" / "grub.d" / "lab-llm.cfg"

    created = run_module(monkeypatch, args_for(root, params=["iommu=pt"], grub_dropin="lab-llm.cfg"))
    assert created.result["changed"] is True
    assert created.result["path"] == "/etc/default/grub.d/lab-llm.cfg"
    assert created.result["configured_before"] == []
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="${GRUB_CMDLINE_LINUX_DEFAULT} iommu=pt"' in dropin.read_text()
    assert (root / "etc" / "default" / "grub").read_text() == PROXMOX_GRUB

    extended = run_module(monkeypatch, args_for(root, params=["intel_iommu=on"], grub_dropin="lab-llm.cfg"))
    assert extended.result["configured_after"] == ["iommu=pt", "intel_iommu=on"]

    run_module(monkeypatch, args_for(root, params=["iommu", "intel_iommu"], state="absent", grub_dropin="lab-llm.cfg"))
    assert not dropin.exists()


def test_acs_override_warns(monkeypatch, tmp_path, warnings):
    root = grub_host(tmp_path)
    run_module(monkeypatch, args_for(root, params=["pcie_acs_override=downstream,multifunction"]))
    assert len(warnings) == 1
    assert "pcie_acs_override" in warnings[0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"params": ["iommu=pt", "quiet splash"]}, "invalid: ['quiet splash']"),
        ({"params": ['x="1"']}, "invalid: ['x=\"1\"']"),
        ({"params": []}, "params must be non-empty"),
        ({"params": ["iommu=pt"], "grub_dropin": "../grub"}, "grub_dropin='../grub'"),
        ({"params": ["iommu=pt"], "grub_dropin": "lab-llm"}, "ending in .cfg"),
    ],
)
def test_bad_input_fails_before_touching_anything(monkeypatch, tmp_path, extra, message):
    root = grub_host(tmp_path)
    outcome = run_module(monkeypatch, args_for(root, **extra))
    assert outcome.failed
    assert message in outcome.result["msg"]
    assert (root / "etc" / "default" / "grub").read_text() == PROXMOX_GRUB
    assert not (root / "etc" / "default" / "grub.d").exists()


def test_unparsable_grub_value_fails_naming_file_and_value(monkeypatch, tmp_path):
    root = grub_host(tmp_path, grub="GRUB_CMDLINE_LINUX_DEFAULT=quiet splash\n")
    outcome = run_module(monkeypatch, args_for(root, params=["iommu=pt"]))
    assert outcome.failed
    assert "/etc/default/grub" in outcome.result["msg"]
    assert "quiet splash" in outcome.result["msg"]


def test_missing_grub_defaults_fails(monkeypatch, tmp_path):
    root = grub_host(tmp_path, grub=None)
    outcome = run_module(monkeypatch, args_for(root, params=["iommu=pt"]))
    assert outcome.failed
    assert "/etc/default/grub does not exist" in outcome.result["msg"]
