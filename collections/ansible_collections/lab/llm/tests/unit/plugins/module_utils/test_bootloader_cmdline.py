"""Editing kernel parameters inside /etc/default/grub, GRUB drop-ins and /etc/kernel/cmdline."""

from __future__ import annotations

import pytest

from ansible_collections.lab.llm.plugins.module_utils.bootloader_cmdline import (
    CmdlineError,
    apply_params,
    cmdline_satisfies,
    dropin_tokens,
    edit_grub_defaults,
    edit_kernel_cmdline,
    grub_default_tokens,
    invalid_params,
    render_dropin,
)

PROXMOX_GRUB = """# If you change this file, run 'update-grub' afterwards to update
# /boot/grub/grub.cfg.
GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR="Proxmox VE"
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX=""
# Disable os-prober, it might add menu entries for each guest
GRUB_DISABLE_OS_PROBER=true
"""


@pytest.mark.parametrize(
    ("tokens", "params", "state", "expected"),
    [
        (["quiet"], ["intel_iommu=on", "iommu=pt"], "present", ["quiet", "intel_iommu=on", "iommu=pt"]),
        (["quiet", "intel_iommu=off"], ["intel_iommu=on"], "present", ["quiet", "intel_iommu=on"]),
        (["iommu=pt", "quiet", "iommu=soft"], ["iommu=pt"], "present", ["iommu=pt", "quiet", "iommu=soft"]),
        (["iommu=nopt", "quiet", "iommu=soft"], ["iommu=pt"], "present", ["iommu=pt", "quiet"]),
        (["quiet", "pcie_acs_override=downstream"], ["pcie_acs_override"], "absent", ["quiet"]),
        (["quiet", "iommu=pt"], ["iommu=soft"], "absent", ["quiet", "iommu=pt"]),
        (["quiet", "nomodeset"], ["nomodeset"], "absent", ["quiet"]),
        # Keys every occurrence of which counts are added, never replaced (passthrough guides turn off
        # both framebuffers with two video= options; a serial console is added to the screen's).
        (
            ["quiet"],
            ["video=efifb:off", "video=vesafb:off"],
            "present",
            ["quiet", "video=efifb:off", "video=vesafb:off"],
        ),
        (
            ["quiet", "video=vesafb:off"],
            ["video=efifb:off"],
            "present",
            ["quiet", "video=vesafb:off", "video=efifb:off"],
        ),
        (["console=tty0"], ["console=ttyS0,115200n8"], "present", ["console=tty0", "console=ttyS0,115200n8"]),
        (
            ["initcall_blacklist=sysfb_init"],
            ["initcall_blacklist=x"],
            "present",
            ["initcall_blacklist=sysfb_init", "initcall_blacklist=x"],
        ),
        # A key the caller names twice is taken as meant twice, whatever it is.
        (["quiet", "foo=a"], ["foo=a", "foo=b"], "present", ["quiet", "foo=a", "foo=b"]),
        (
            ["quiet", "video=efifb:off", "video=vesafb:off"],
            ["video=vesafb:off"],
            "absent",
            ["quiet", "video=efifb:off"],
        ),
    ],
)
def test_apply_params(tokens, params, state, expected):
    assert apply_params(tokens, params, state) == expected


def test_grub_defaults_edit_keeps_every_other_line():
    edited = edit_grub_defaults(PROXMOX_GRUB, ["intel_iommu=on", "iommu=pt"], "present")

    assert edited == PROXMOX_GRUB.replace('"quiet"', '"quiet intel_iommu=on iommu=pt"')
    assert grub_default_tokens(edited) == ["quiet", "intel_iommu=on", "iommu=pt"]
    # Applying again changes nothing (the module's idempotence rests on this).
    assert edit_grub_defaults(edited, ["intel_iommu=on", "iommu=pt"], "present") == edited
    assert edit_grub_defaults(edited, ["intel_iommu", "iommu"], "absent") == PROXMOX_GRUB


def test_grub_defaults_last_assignment_wins_and_quoting_is_understood():
    text = "GRUB_CMDLINE_LINUX_DEFAULT='quiet splash'\nexport GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"  # ours\n"
    edited = edit_grub_defaults(text, ["iommu=pt"], "present")
    assert edited == (
        "GRUB_CMDLINE_LINUX_DEFAULT='quiet splash'\nexport GRUB_CMDLINE_LINUX_DEFAULT=\"quiet iommu=pt\"  # ours\n"
    )


def test_grub_defaults_appends_the_variable_when_missing():
    assert edit_grub_defaults("GRUB_TIMEOUT=5", ["iommu=pt"], "present") == (
        'GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT="iommu=pt"\n'
    )
    assert edit_grub_defaults("GRUB_TIMEOUT=5\n", ["iommu=pt"], "absent") == "GRUB_TIMEOUT=5\n"


def test_grub_defaults_refuses_what_it_cannot_parse():
    with pytest.raises(CmdlineError, match="GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub"):
        edit_grub_defaults('GRUB_CMDLINE_LINUX_DEFAULT="quiet\n', ["iommu=pt"], "present")
    with pytest.raises(CmdlineError, match="unquoted spaces"):
        edit_grub_defaults("GRUB_CMDLINE_LINUX_DEFAULT=quiet splash\n", ["iommu=pt"], "present")


def test_dropin_round_trip():
    text = render_dropin(["intel_iommu=on", "iommu=pt"])
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="${GRUB_CMDLINE_LINUX_DEFAULT} intel_iommu=on iommu=pt"\n' in text
    assert text.startswith("# Managed by lab.llm.kernel_cmdline")
    assert dropin_tokens(text, "/etc/default/grub.d/lab-llm.cfg") == ["intel_iommu=on", "iommu=pt"]
    assert render_dropin([]) == ""


def test_kernel_cmdline_file_is_one_line():
    text = "root=ZFS=rpool/ROOT/pve-1 boot=zfs\n"
    assert edit_kernel_cmdline(text, ["iommu=pt"], "present") == "root=ZFS=rpool/ROOT/pve-1 boot=zfs iommu=pt\n"
    assert edit_kernel_cmdline(text, ["iommu=pt"], "absent") is text


def test_invalid_params_are_named():
    assert invalid_params(["iommu=pt", "a b", "x='y'", "", "vfio-pci.ids=10de:2204,10de:1aef", "k=$(id)"]) == [
        "a b",
        "x='y'",
        "",
        "k=$(id)",
    ]


def test_running_cmdline_satisfies():
    running = ["BOOT_IMAGE=/boot/vmlinuz", "ro", "quiet", "intel_iommu=on", "iommu=pt"]
    assert cmdline_satisfies(running, ["intel_iommu=on", "iommu=pt"], "present")
    assert not cmdline_satisfies(running, ["intel_iommu=on", "vfio-pci.ids=10de:2204"], "present")
    assert cmdline_satisfies(running, ["pcie_acs_override"], "absent")
    assert not cmdline_satisfies(running, ["iommu"], "absent")
    # Every video= and console= counts, not only the last one.
    framebuffers_off = ["quiet", "video=efifb:off", "video=vesafb:off", "console=tty0", "console=ttyS0"]
    assert cmdline_satisfies(framebuffers_off, ["video=efifb:off", "video=vesafb:off", "console=tty0"], "present")
    assert not cmdline_satisfies(framebuffers_off, ["video=simplefb:off"], "present")
