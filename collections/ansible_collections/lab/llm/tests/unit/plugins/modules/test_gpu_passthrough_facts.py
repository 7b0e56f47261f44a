"""lab.llm.gpu_passthrough_facts against fake sysfs/procfs trees of the hosts we meet in labs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ansible_collections.lab.llm.plugins.modules import gpu_passthrough_facts
from tests.fixtures.sysfs.sysfs_tree import PRESETS, HostSpec, PciFunction, after_boot, build_tree
from tests.module_runner import ModuleExit
from tests.module_runner import run_module_result as run_module_main


def run_module(monkeypatch: pytest.MonkeyPatch, args: dict) -> ModuleExit:
    return run_module_main(monkeypatch, gpu_passthrough_facts.main, args)


def facts_of(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, host: HostSpec) -> dict:
    root = build_tree(tmp_path, host)
    outcome = run_module(monkeypatch, {"root": str(root), "config_root": str(root)})
    assert not outcome.failed, outcome.result
    assert outcome.result["changed"] is False
    return outcome.result["ansible_facts"]["gpu_passthrough"]


def test_rtx3090_in_clean_group_with_its_root_port(monkeypatch, tmp_path):
    facts = facts_of(monkeypatch, tmp_path, PRESETS["intel-3090-clean"])

    assert facts["cpu_vendor"] == "intel"
    assert facts["iommu"]["active"] is True
    assert facts["iommu"]["units"] == ["dmar0"]
    assert facts["iommu"]["cmdline_flags"] == {}
    assert facts["boot_loader"]["name"] == "grub"
    assert facts["boot_loader"]["refresh_command"] == ["update-grub"]
    assert facts["boot_loader"]["cmdline_file"] == "/etc/default/grub"
    # The BMC's ASPEED VGA (1a03:2000) is a display device too, but not an NVIDIA one.
    assert [gpu["address"] for gpu in facts["gpus"]] == ["0000:01:00"]
    gpu = facts["gpus"][0]
    assert gpu["model"] == "GeForce RTX 3090"
    assert gpu["functions"] == [
        {
            "address": "0000:01:00.0",
            "vendor_id": "10de",
            "device_id": "2204",
            "subsystem_vendor_id": "1458",
            "subsystem_device_id": "403b",
            "class": "030000",
            "driver": "nouveau",
            "driver_module": "nouveau",
            "iommu_group": 14,
            "name": "GeForce RTX 3090",
            "host_drivers": ["nouveau", "nvidiafb"],
        },
        {
            "address": "0000:01:00.1",
            "vendor_id": "10de",
            "device_id": "1aef",
            "subsystem_vendor_id": "1458",
            "subsystem_device_id": "403b",
            "class": "040300",
            "driver": "snd_hda_intel",
            "driver_module": "snd_hda_intel",
            "iommu_group": 14,
            "name": "GA102 High Definition Audio Controller",
            "host_drivers": ["snd_hda_intel"],
        },
    ]
    assert gpu["vfio_ids"] == ["10de:1aef", "10de:2204"]
    assert gpu["host_drivers"] == ["nouveau", "nvidiafb", "snd_hda_intel"]
    assert gpu["same_ids_elsewhere"] == []
    assert gpu["iommu_group"] == 14
    assert gpu["iommu_group_members"] == ["0000:00:01.0", "0000:01:00.0", "0000:01:00.1"]
    assert gpu["iommu_group_clean"] is True
    assert gpu["foreign_devices"] == []
    assert gpu["bound_to_vfio"] is False


def test_rtx3060_sharing_its_group_with_a_nic_is_unsafe(monkeypatch, tmp_path):
    facts = facts_of(monkeypatch, tmp_path, PRESETS["intel-3060-shared"])

    gpu = facts["gpus"][0]
    assert gpu["address"] == "0000:02:00"
    assert gpu["model"] == "GeForce RTX 3060 Lite Hash Rate"
    assert gpu["vfio_ids"] == ["10de:228e", "10de:2504"]
    assert gpu["iommu_group_clean"] is False
    assert gpu["foreign_devices"] == [
        {"address": "0000:03:00.0", "vendor_id": "8086", "device_id": "1533", "class": "020000", "driver": "igb"}
    ]
    assert facts["iommu"]["cmdline_flags"] == {"intel_iommu": "on"}


def test_amd_host_has_iommu_without_cmdline_flags(monkeypatch, tmp_path):
    facts = facts_of(monkeypatch, tmp_path, PRESETS["amd-no-flags"])

    assert facts["cpu_vendor"] == "amd"
    assert facts["iommu"] == {
        "active": True,
        "group_count": 2,
        "units": ["ivhd0"],
        "cmdline_flags": {},
        "passthrough_mode": False,
    }
    assert facts["gpus"][0]["iommu_group"] == 32
    assert facts["gpus"][0]["iommu_group_clean"] is True


def test_iommu_off_leaves_groups_unknown_and_never_clean(monkeypatch, tmp_path):
    facts = facts_of(monkeypatch, tmp_path, PRESETS["iommu-off"])

    assert facts["iommu"]["active"] is False
    assert facts["iommu"]["group_count"] == 0
    gpu = facts["gpus"][0]
    assert gpu["iommu_group"] is None
    assert gpu["iommu_group_clean"] is False
    assert all(function["iommu_group"] is None for function in gpu["functions"])


def test_zfs_uefi_host_boots_systemd_boot_through_proxmox_boot_tool(monkeypatch, tmp_path):
    facts = facts_of(monkeypatch, tmp_path, PRESETS["amd-zfs-systemd-boot"])

    boot = facts["boot_loader"]
    assert boot["name"] == "systemd-boot"
    assert boot["efi"] is True
    assert boot["proxmox_boot_tool"] is True
    assert boot["cmdline_file"] == "/etc/kernel/cmdline"
    assert boot["refresh_command"] == ["proxmox-boot-tool", "refresh"]
    assert facts["gpus"][0]["model"] == "GeForce RTX 3060 Lite Hash Rate"
    assert facts["gpus"][0]["iommu_group_clean"] is True


def test_systemd_boot_detected_from_etc_when_cmdline_has_no_marker(monkeypatch, tmp_path):
    host = replace(PRESETS["amd-zfs-systemd-boot"], cmdline="root=ZFS=rpool/ROOT/pve-1 boot=zfs")
    assert facts_of(monkeypatch, tmp_path, host)["boot_loader"]["name"] == "systemd-boot"


def test_grub_on_zfs_legacy_bios_host_still_grub(monkeypatch, tmp_path):
    # ZFS root on legacy BIOS: proxmox-boot-tool syncs ESPs but GRUB boots (BOOT_IMAGE= present).
    host = replace(
        PRESETS["amd-zfs-systemd-boot"],
        efi=False,
        cmdline="BOOT_IMAGE=/ROOT/pve-1@/boot/vmlinuz-6.8.12-4-pve root=ZFS=rpool/ROOT/pve-1 boot=zfs",
    )
    boot = facts_of(monkeypatch, tmp_path, host)["boot_loader"]
    assert boot["name"] == "grub"
    assert boot["proxmox_boot_tool"] is True


def test_bound_to_vfio_after_reboot_with_ids(monkeypatch, tmp_path):
    host = after_boot(PRESETS["intel-3090-clean"], "intel_iommu=on iommu=pt", {"10de:2204", "10de:1aef"})
    facts = facts_of(monkeypatch, tmp_path, host)

    assert facts["iommu"]["passthrough_mode"] is True
    assert facts["iommu"]["cmdline_flags"] == {"intel_iommu": "on", "iommu": "pt"}
    assert facts["gpus"][0]["bound_to_vfio"] is True
    assert {f["driver"] for f in facts["gpus"][0]["functions"]} == {"vfio-pci"}


def test_3d_controller_class_and_usb_ucsi_siblings(monkeypatch, tmp_path):
    # Turing cards expose USB (10de:1ad8) and UCSI (10de:1ad9) functions; data-centre cards are class 0x0302.
    host = HostSpec(
        ("GenuineIntel", "Xeon"),
        "BOOT_IMAGE=/boot/vmlinuz ro",
        (
            PciFunction("0000:05:00.0", "0x10de", "0x1e87", "0x030200", None, 3),
            PciFunction("0000:05:00.2", "0x10de", "0x1ad8", "0x0c0330", "xhci_hcd", 3),
            PciFunction("0000:05:00.3", "0x10de", "0x1ad9", "0x0c8000", "nvidia-gpu", 3),
        ),
    )
    gpu = facts_of(monkeypatch, tmp_path, host)["gpus"][0]
    assert gpu["address"] == "0000:05:00"
    assert [f["address"] for f in gpu["functions"]] == ["0000:05:00.0", "0000:05:00.2", "0000:05:00.3"]
    assert gpu["vfio_ids"] == ["10de:1ad8", "10de:1ad9", "10de:1e87"]
    assert gpu["model"] is None
    assert gpu["iommu_group_clean"] is True


def test_model_name_comes_from_hosts_pci_ids_first(monkeypatch, tmp_path):
    pci_ids = tmp_path / "usr" / "share" / "misc" / "pci.ids"
    pci_ids.parent.mkdir(parents=True)
    pci_ids.write_text(
        "# tiny pci.ids\n10de  NVIDIA Corporation\n\t2204  GA102 [GeForce RTX 3090 from pci.ids]\n"
        "\t\t1458 403b  subsystem line\n1a03  ASPEED Technology, Inc.\n\t2204  not this one\n"
    )
    gpu = facts_of(monkeypatch, tmp_path, PRESETS["intel-3090-clean"])["gpus"][0]
    assert gpu["model"] == "GeForce RTX 3090 from pci.ids"


def test_root_without_sys_and_proc_fails_naming_it(monkeypatch, tmp_path):
    outcome = run_module(monkeypatch, {"root": str(tmp_path / "nothing")})
    assert outcome.failed
    assert "nothing" in outcome.result["msg"]
    assert "proc/ and sys/" in outcome.result["msg"]


def test_check_mode_reads_the_same(monkeypatch, tmp_path):
    root = build_tree(tmp_path, PRESETS["intel-3090-clean"])
    outcome = run_module(monkeypatch, {"root": str(root), "config_root": str(root), "_ansible_check_mode": True})
    assert not outcome.failed
    assert outcome.result["ansible_facts"]["gpu_passthrough"]["gpus"][0]["address"] == "0000:01:00"


# -- issue 13: groups by the kernel's rule, drivers of every function, identical cards ---------------
def test_driverless_host_bridge_and_port_leave_the_group_usable(monkeypatch, tmp_path):
    # The group 44: AMD's driverless dummy host bridge (class 0x0600), the GPP bridge on
    # pcieport, and an RTX 3090 with its audio function.
    gpu = facts_of(monkeypatch, tmp_path, PRESETS["amd-3090-host-bridge"])["gpus"][0]
    assert gpu["iommu_group"] == 44
    assert gpu["iommu_group_members"] == ["0000:40:03.0", "0000:40:03.1", "0000:41:00.0", "0000:41:00.1"]
    assert gpu["iommu_group_clean"] is True
    assert gpu["foreign_devices"] == []


@pytest.mark.parametrize(
    ("member", "blocks"),
    [
        (PciFunction("0000:40:01.0", "0x1022", "0x1482", "0x060000", None, 44), False),  # host bridge, no driver
        (PciFunction("0000:40:01.1", "0x1022", "0x1483", "0x060400", "pcieport", 44), False),  # root port
        (PciFunction("0000:00:1f.0", "0x8086", "0xa1c8", "0x060100", "lpc_ich", 44), False),  # ISA bridge
        (PciFunction("0000:42:00.0", "0x1d6a", "0x07b1", "0x020000", None, 44), False),  # NIC without driver
        (PciFunction("0000:42:00.0", "0x1d6a", "0x07b1", "0x020000", "vfio-pci", 44), False),  # already vfio
        (PciFunction("0000:42:00.0", "0x1d6a", "0x07b1", "0x020000", "pci-stub", 44), False),  # parked
        (PciFunction("0000:42:00.0", "0x1d6a", "0x07b1", "0x020000", "atlantic", 44), True),  # NIC in use
        (PciFunction("0000:42:00.0", "0x1022", "0x149c", "0x0c0330", "xhci_hcd", 44), True),  # host USB
        (PciFunction("0000:42:00.0", "0x1022", "0x1487", "0x040300", "snd_hda_intel", 44), True),  # onboard audio
    ],
)
def test_group_members_block_only_when_a_host_driver_owns_their_dma(monkeypatch, tmp_path, member, blocks):
    host = replace(PRESETS["amd-3090-host-bridge"], functions=(*_rtx3090_functions(), member))
    gpu = facts_of(monkeypatch, tmp_path, host)["gpus"][0]
    assert gpu["iommu_group_clean"] is not blocks
    assert [d["address"] for d in gpu["foreign_devices"]] == ([member.address] if blocks else [])


def _rtx3090_functions() -> tuple:
    return tuple(f for f in PRESETS["amd-3090-host-bridge"].functions if f.vendor == "0x10de")


def test_turing_card_reports_the_host_drivers_of_all_four_functions(monkeypatch, tmp_path):
    gpu = facts_of(monkeypatch, tmp_path, PRESETS["intel-1660s-turing"])["gpus"][0]
    assert gpu["vfio_ids"] == ["10de:1aeb", "10de:1aec", "10de:1aed", "10de:21c4"]
    assert {f["address"]: f["host_drivers"] for f in gpu["functions"]} == {
        "0000:01:00.0": ["nouveau", "nvidiafb"],
        "0000:01:00.1": ["snd_hda_intel"],
        "0000:01:00.2": ["xhci_pci"],  # driver xhci_hcd, module xhci_pci
        "0000:01:00.3": ["i2c_nvidia_gpu"],  # driver nvidia-gpu, module i2c_nvidia_gpu
    }
    assert gpu["host_drivers"] == ["i2c_nvidia_gpu", "nouveau", "nvidiafb", "snd_hda_intel", "xhci_pci"]


def test_host_drivers_come_from_modalias_even_when_nothing_is_bound(monkeypatch, tmp_path):
    unbound = tuple(replace(f, driver=None) for f in PRESETS["intel-1660s-turing"].functions)
    gpu = facts_of(monkeypatch, tmp_path, replace(PRESETS["intel-1660s-turing"], functions=unbound))["gpus"][0]
    assert gpu["host_drivers"] == ["i2c_nvidia_gpu", "nouveau", "nvidiafb", "snd_hda_intel", "xhci_pci"]
    # A module the running kernel has an alias for (the proprietary driver, once installed) is found too.
    alias = PRESETS["intel-1660s-turing"].modules_alias + "alias pci:v000010DEd*sv*sd*bc03sc00i00* nvidia\n"
    host = replace(PRESETS["intel-1660s-turing"], functions=unbound, modules_alias=alias)
    gpu = facts_of(monkeypatch, tmp_path / "with-nvidia", host)["gpus"][0]
    assert "nvidia" in gpu["host_drivers"]


def test_host_drivers_by_class_when_the_kernel_has_no_modules_alias(monkeypatch, tmp_path):
    host = replace(PRESETS["intel-1660s-turing"], modules_alias=None)
    gpu = facts_of(monkeypatch, tmp_path, host)["gpus"][0]
    assert gpu["host_drivers"] == ["i2c_nvidia_gpu", "nouveau", "nvidia", "nvidiafb", "snd_hda_intel", "xhci_pci"]


def test_identical_cards_see_each_others_functions(monkeypatch, tmp_path):
    gpus = facts_of(monkeypatch, tmp_path, PRESETS["intel-two-3090"])["gpus"]
    assert [gpu["address"] for gpu in gpus] == ["0000:01:00", "0000:02:00"]
    assert gpus[0]["same_ids_elsewhere"] == ["0000:02:00.0", "0000:02:00.1"]
    assert gpus[1]["same_ids_elsewhere"] == ["0000:01:00.0", "0000:01:00.1"]
    assert all(gpu["iommu_group_clean"] for gpu in gpus)


def test_driver_without_a_module_link_is_named_by_its_module(monkeypatch, tmp_path):
    # A tree without drivers/<name>/module links (a captured or hand-made one): xhci_hcd is xhci_pci's driver.
    host = replace(PRESETS["intel-1660s-turing"], modules_alias=None)
    root = build_tree(tmp_path, host)
    for link in (root / "sys" / "bus" / "pci" / "drivers").glob("*/module"):
        link.unlink()
    outcome = run_module(monkeypatch, {"root": str(root), "config_root": str(root)})
    functions = outcome.result["ansible_facts"]["gpu_passthrough"]["gpus"][0]["functions"]
    assert [f["driver_module"] for f in functions] == ["nouveau", "snd_hda_intel", "xhci_pci", "i2c_nvidia_gpu"]


def test_vfio_pci_ids_already_set_for_modprobe_are_reported_in_its_order(monkeypatch, tmp_path):
    # The Proxmox VE admin guide's passthrough section writes "options vfio-pci ids=..." to
    # /etc/modprobe.d/vfio.conf; here it parks an LSI HBA, and a forum guide's file adds the GPU with
    # disable_vga=1 over a continued line. /lib/modprobe.d/vfio.conf is hidden by the /etc one.
    host = replace(PRESETS["intel-3090-clean"], etc_files={
        "etc/modprobe.d/vfio.conf": "# HBA for the TrueNAS VM\noptions vfio-pci ids=1000:0072\n",
        "etc/modprobe.d/pve-blacklist.conf": "blacklist nvidiafb\n",
        "etc/modprobe.d/zz-gpu.conf": "options vfio_pci \\\n  ids=10DE:2204,10de:1aef disable_vga=1 # rtx\n",
        "lib/modprobe.d/vfio.conf": "options vfio-pci ids=ffff:ffff\n",
        "lib/modprobe.d/aliases.conf": "alias pci:v* vfio_pci\noptions vfio-pci disable_idle_d3=1\n",
    })  # fmt: skip
    facts = facts_of(monkeypatch, tmp_path, host)
    assert facts["vfio_pci_ids_options"] == [
        {"path": "/etc/modprobe.d/vfio.conf", "ids": ["1000:0072"]},
        {"path": "/etc/modprobe.d/zz-gpu.conf", "ids": ["10de:1aef", "10de:2204"]},
    ]
    assert facts_of(monkeypatch, tmp_path / "bare", PRESETS["intel-3090-clean"])["vfio_pci_ids_options"] == []
