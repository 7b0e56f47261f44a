"""lab.llm.kernel_cmdline on GRUB and systemd-boot hosts built from fixture trees."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ansible_collections.lab.llm.plugins.modules import kernel_cmdline
from tests.fixtures.sysfs.sysfs_tree import PRESETS, after_boot, build_tree
from tests.module_runner import ModuleExit
from tests.module_runner import run_module_result as run_module_main

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


def test_repeated_video_options_are_kept_and_satisfied(monkeypatch, tmp_path):
    # /etc/default/grub as passthrough guides for Proxmox VE write it (e.g. amrzs.net/2024/11/03/pve_sriov_gpu):
    # both framebuffers off with two video= options, each of which the kernel keeps (drivers/video/cmdline.c).
    forum = PROXMOX_GRUB.replace('"quiet"', '"quiet amd_iommu=on video=efifb:off video=vesafb:off"')
    root = grub_host(tmp_path, "amd-3090-host-bridge", grub=forum)
    wanted = ["iommu=pt", "video=efifb:off", "video=vesafb:off"]

    first = run_module(monkeypatch, args_for(root, params=wanted))
    assert not first.failed, first.result
    assert first.result["configured_after"] == [
        "quiet",
        "amd_iommu=on",
        "video=efifb:off",
        "video=vesafb:off",
        "iommu=pt",
    ]
    second = run_module(monkeypatch, args_for(root, params=wanted))
    assert not second.failed, second.result
    assert second.result["changed"] is False

    # On a stock host both are added, in the order given.
    fresh = grub_host(tmp_path / "fresh")
    added = run_module(monkeypatch, args_for(fresh, params=["video=efifb:off", "video=vesafb:off"]))
    assert not added.failed, added.result
    assert added.result["configured_after"] == ["quiet", "video=efifb:off", "video=vesafb:off"]


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
    assert created.result["configured_before"] == ["quiet"]
    assert created.result["configured_after"] == ["quiet", "iommu=pt"]
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="${GRUB_CMDLINE_LINUX_DEFAULT} iommu=pt"' in dropin.read_text()
    assert (root / "etc" / "default" / "grub").read_text() == PROXMOX_GRUB

    extended = run_module(monkeypatch, args_for(root, params=["intel_iommu=on"], grub_dropin="lab-llm.cfg"))
    assert extended.result["configured_after"] == ["quiet", "iommu=pt", "intel_iommu=on"]

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


# -- GRUB drop-ins: the value update-grub really uses (issue 13, item 1) ------------------------------
# grub-mkconfig sources /etc/default/grub, then /etc/default/grub.d/*.cfg; 10_linux boots the default
# entry with "${GRUB_CMDLINE_LINUX} ${GRUB_CMDLINE_LINUX_DEFAULT}". The tests ask /bin/sh the same
# question, so the module's answer is checked against a real shell, not against itself.
GRUB_MKCONFIG_SOURCING = """
if test -f "$1/etc/default/grub" ; then . "$1/etc/default/grub"; fi
for x in "$1"/etc/default/grub.d/*.cfg ; do
  if [ -e "${x}" ]; then . "${x}"; fi
done
echo "${GRUB_CMDLINE_LINUX} ${GRUB_CMDLINE_LINUX_DEFAULT}"
"""
IOMMU = ["intel_iommu=on", "iommu=pt"]


def shell_kernel_args(root: Path) -> list[str]:
    """What update-grub would pass to the kernel, evaluated by /bin/sh with grub-mkconfig's loop."""
    done = subprocess.run(
        ["/bin/sh", "-c", GRUB_MKCONFIG_SOURCING, "sh", str(root)],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    return done.stdout.split()


def grub_with_dropins(tmp_path: Path, dropins: dict[str, str], grub: str = PROXMOX_GRUB) -> Path:
    root = grub_host(tmp_path, grub=grub)
    for name, text in dropins.items():
        path = root / "etc" / "default" / "grub.d" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text() for p in sorted((root / "etc" / "default").rglob("*")) if p.is_file()
    }


def test_hosters_dropin_wins_so_the_module_edits_it(monkeypatch, tmp_path):
    # The input: a hosting installer's drop-in replaces the installer's "quiet".
    root = grub_with_dropins(tmp_path, {"50-hoster.cfg": 'GRUB_CMDLINE_LINUX_DEFAULT="nomodeset consoleblank=0"\n'})
    assert shell_kernel_args(root) == ["nomodeset", "consoleblank=0"]

    outcome = run_module(monkeypatch, args_for(root, params=IOMMU))
    assert not outcome.failed, outcome.result
    assert outcome.result["path"] == "/etc/default/grub.d/50-hoster.cfg"
    assert outcome.result["configured_before"] == ["nomodeset", "consoleblank=0"]
    assert outcome.result["configured_after"] == ["nomodeset", "consoleblank=0", "intel_iommu=on", "iommu=pt"]
    assert shell_kernel_args(root) == outcome.result["configured_after"]
    assert (root / "etc" / "default" / "grub").read_text() == PROXMOX_GRUB
    assert run_module(monkeypatch, args_for(root, params=IOMMU)).result["changed"] is False


def test_own_dropin_that_sorts_after_the_hosters_appends_and_wins(monkeypatch, tmp_path):
    root = grub_with_dropins(tmp_path, {"50-hoster.cfg": 'GRUB_CMDLINE_LINUX_DEFAULT="nomodeset consoleblank=0"\n'})
    outcome = run_module(monkeypatch, args_for(root, params=IOMMU, grub_dropin="lab-llm.cfg"))
    assert not outcome.failed, outcome.result
    assert outcome.result["configured_after"] == ["nomodeset", "consoleblank=0", "intel_iommu=on", "iommu=pt"]
    assert shell_kernel_args(root) == outcome.result["configured_after"]


def test_own_dropin_overridden_by_a_later_one_fails_and_writes_nothing(monkeypatch, tmp_path):
    root = grub_with_dropins(tmp_path, {"zz-hoster.cfg": 'GRUB_CMDLINE_LINUX_DEFAULT="nomodeset consoleblank=0"\n'})
    before = snapshot(root)
    outcome = run_module(monkeypatch, args_for(root, params=IOMMU, grub_dropin="lab-llm.cfg"))
    assert outcome.failed
    message = outcome.result["msg"]
    assert "/etc/default/grub.d/zz-hoster.cfg line 1 sets GRUB_CMDLINE_LINUX_DEFAULT again" in message
    assert "'nomodeset consoleblank=0'" in message
    assert "sorts after" in message
    assert snapshot(root) == before


def test_parameter_already_in_grub_cmdline_linux_is_not_added_twice(monkeypatch, tmp_path):
    grub = PROXMOX_GRUB.replace('GRUB_CMDLINE_LINUX=""', 'GRUB_CMDLINE_LINUX="intel_iommu=on"')
    root = grub_host(tmp_path, grub=grub)
    outcome = run_module(monkeypatch, args_for(root, params=IOMMU))
    assert outcome.result["configured_before"] == ["intel_iommu=on", "quiet"]
    assert outcome.result["configured_after"] == ["intel_iommu=on", "quiet", "iommu=pt"]
    assert shell_kernel_args(root) == outcome.result["configured_after"]
    # Every parameter already reaches the kernel: nothing to write.
    assert run_module(monkeypatch, args_for(root, params=["intel_iommu=on"])).result["changed"] is False


def test_removing_a_parameter_that_comes_from_grub_cmdline_linux_fails_naming_it(monkeypatch, tmp_path):
    grub = PROXMOX_GRUB.replace('GRUB_CMDLINE_LINUX=""', 'GRUB_CMDLINE_LINUX="pcie_acs_override=downstream"')
    root = grub_host(tmp_path, grub=grub)
    outcome = run_module(monkeypatch, args_for(root, params=["pcie_acs_override"], state="absent"))
    assert outcome.failed
    assert "/etc/default/grub line 4 puts pcie_acs_override=downstream into GRUB_CMDLINE_LINUX" in outcome.result["msg"]
    assert (root / "etc" / "default" / "grub").read_text() == grub


def test_value_a_later_setting_overrides_in_the_same_key_is_corrected(monkeypatch, tmp_path):
    # intel_iommu=off in a later drop-in that keeps the earlier value: the kernel takes the last value.
    root = grub_with_dropins(
        tmp_path, {"90-vendor.cfg": 'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT intel_iommu=off"\n'}
    )
    outcome = run_module(monkeypatch, args_for(root, params=IOMMU))
    assert not outcome.failed, outcome.result
    assert outcome.result["path"] == "/etc/default/grub.d/90-vendor.cfg"
    assert shell_kernel_args(root) == ["quiet", "intel_iommu=on", "iommu=pt"]
    assert (root / "etc" / "default" / "grub.d" / "90-vendor.cfg").read_text() == (
        'GRUB_CMDLINE_LINUX_DEFAULT="${GRUB_CMDLINE_LINUX_DEFAULT} intel_iommu=on iommu=pt"\n'
    )


@pytest.mark.parametrize(
    "dropins",
    [
        {},
        {"50-hoster.cfg": 'GRUB_CMDLINE_LINUX_DEFAULT="nomodeset consoleblank=0"\n'},
        {"50-cloudimg-settings.cfg": "GRUB_CMDLINE_LINUX_DEFAULT='console=tty1 console=ttyS0'\nGRUB_TIMEOUT=0\n"},
        {"init-select.cfg": 'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT init=/lib/systemd/systemd"\n'},
        {
            "10-a.cfg": 'export GRUB_CMDLINE_LINUX_DEFAULT="splash"  # vendor\n',
            "20-b.cfg": 'EXTRA="mitigations=off"\nGRUB_CMDLINE_LINUX_DEFAULT="${GRUB_CMDLINE_LINUX_DEFAULT} $EXTRA"\n',
            ".hidden.cfg": 'GRUB_CMDLINE_LINUX_DEFAULT="never read"\n',
            "notes.txt": 'GRUB_CMDLINE_LINUX_DEFAULT="nor this"\n',
        },
        {"zfs.cfg": 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX root=ZFS=rpool/ROOT/pve-1 boot=zfs"\n'},
        {"30-export.cfg": "export GRUB_CMDLINE_LINUX GRUB_CMDLINE_LINUX_DEFAULT\n"},
    ],
)
@pytest.mark.parametrize("dropin", [None, "zz-lab-llm.cfg"])
def test_what_update_grub_passes_has_the_parameters_after_every_layout(monkeypatch, tmp_path, dropins, dropin):
    root = grub_with_dropins(tmp_path, dropins)
    expected_before = shell_kernel_args(root)
    extra = {"grub_dropin": dropin} if dropin else {}
    outcome = run_module(monkeypatch, args_for(root, params=IOMMU, **extra))
    assert not outcome.failed, outcome.result
    assert outcome.result["configured_before"] == expected_before
    assert shell_kernel_args(root) == outcome.result["configured_after"]
    assert outcome.result["configured_after"][-2:] == IOMMU
    assert run_module(monkeypatch, args_for(root, params=IOMMU, **extra)).result["changed"] is False


@pytest.mark.parametrize(
    "line",
    [
        'if true; then GRUB_CMDLINE_LINUX_DEFAULT="nomodeset"; fi',
        'GRUB_CMDLINE_LINUX_DEFAULT="$(cat /etc/hoster-args)"',
        'GRUB_CMDLINE_LINUX_DEFAULT="${GRUB_CMDLINE_LINUX_DEFAULT:-quiet} splash"',
        'GRUB_CMDLINE_LINUX_DEFAULT+=" splash"',
    ],
)
def test_shell_it_cannot_evaluate_fails_naming_file_and_line(monkeypatch, tmp_path, line):
    root = grub_with_dropins(tmp_path, {"50-hoster.cfg": "# hoster\n" + line + "\n"})
    before = snapshot(root)
    outcome = run_module(monkeypatch, args_for(root, params=IOMMU))
    assert outcome.failed
    assert "/etc/default/grub.d/50-hoster.cfg line 2" in outcome.result["msg"]
    assert snapshot(root) == before
