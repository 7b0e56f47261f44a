# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CPU vendor, IOMMU state and IOMMU group membership, read from /proc and /sys.

An IOMMU group is the smallest set of devices the host can hand to a VM (kernel
Documentation/driver-api/vfio.rst). Whether a group can go to a VM is decided by the kernel's
DMA-ownership rule (Linux 5.19+, so every Proxmox VE 8 kernel):

- drivers/pci/pci-driver.c ``pci_dma_configure``: binding a driver that does not set
  ``driver_managed_dma`` makes the device use the kernel's DMA domain
  (``iommu_device_use_default_domain``);
- drivers/iommu/iommu.c ``iommu_group_claim_dma_owner``, called when vfio attaches the group
  (drivers/vfio/group.c / container.c), fails with -EBUSY while any device of the group does;
- vfio-pci, pci-stub and the PCIe port driver ``pcieport`` (drivers/pci/pcie/portdrv.c) set
  ``driver_managed_dma``, so bridges on pcieport and devices with no driver never block.

Proxmox VE then binds every device of the group to vfio-pci at VM start except PCI bridges (those
with a ``pci_bus`` directory), pve-common ``PVE::SysFSTools::pci_dev_group_bind_to_vfio``: a
driverless device goes to vfio-pci and nobody on the host misses it; a device a host driver uses
(a NIC, a SATA controller) would be taken from the host. Bridge-class functions (0x06xx: host,
ISA and PCI bridges) route transactions and do no DMA of their own.

So a GPU's group is "clean" when every other member is a bridge-class function, has no driver, or
is bound to a driver that manages DMA itself (vfio-pci, pci-stub, pcieport). Everything else is a
foreign device: the card cannot leave the host without taking it along.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ansible_collections.lab.llm.plugins.module_utils.pci import GpuCard, PciFunction

CPU_VENDORS = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}
# Drivers that set driver_managed_dma (kernel: vfio-pci, pci-stub, the PCIe port driver), by driver name.
DMA_MANAGING_DRIVERS = ("vfio-pci", "pci-stub", "pcieport")
# Kernel parameters that switch the IOMMU or its mode (Documentation/admin-guide/kernel-parameters.txt).
IOMMU_CMDLINE_KEYS = ("intel_iommu", "amd_iommu", "iommu")


@dataclass
class IommuState:
    """Whether DMA remapping is on, and what the running kernel was told on its command line."""

    active: bool
    group_count: int
    units: list[str]
    cmdline_flags: dict[str, str]

    @property
    def passthrough_mode(self) -> bool:
        return self.cmdline_flags.get("iommu") == "pt"

    def as_dict(self) -> dict:
        return {
            "active": self.active,
            "group_count": self.group_count,
            "units": self.units,
            "cmdline_flags": self.cmdline_flags,
            "passthrough_mode": self.passthrough_mode,
        }


@dataclass
class GroupCheck:
    """The verdict on one GPU card's IOMMU group."""

    group: int | None
    members: list[str] = field(default_factory=list)
    foreign: list[PciFunction] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.group is not None and not self.foreign


def read_text(path: str, default: str = "") -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except FileNotFoundError:
        return default


def cpu_vendor(root: str) -> str:
    """``intel``, ``amd`` or ``unknown``, from the first vendor_id line of /proc/cpuinfo."""
    for line in read_text(os.path.join(root, "proc", "cpuinfo")).splitlines():
        key, separator, value = line.partition(":")
        if separator and key.strip() == "vendor_id":
            return CPU_VENDORS.get(value.strip(), "unknown")
    return "unknown"


def running_cmdline(root: str) -> str:
    return read_text(os.path.join(root, "proc", "cmdline")).strip()


def cmdline_flags(cmdline: str) -> dict[str, str]:
    """The IOMMU-related key=value parameters of a kernel command line (last one wins, as in the kernel)."""
    flags = {}
    for token in cmdline.split():
        key, separator, value = token.partition("=")
        if separator and key in IOMMU_CMDLINE_KEYS:
            flags[key] = value
    return flags


def iommu_groups_dir(root: str) -> str:
    return os.path.join(root, "sys", "kernel", "iommu_groups")


def read_iommu_state(root: str) -> IommuState:
    """Active means the kernel built IOMMU groups: /sys/kernel/iommu_groups is populated."""
    groups_dir = iommu_groups_dir(root)
    group_count = len(os.listdir(groups_dir)) if os.path.isdir(groups_dir) else 0
    units_dir = os.path.join(root, "sys", "class", "iommu")
    units = sorted(os.listdir(units_dir)) if os.path.isdir(units_dir) else []
    return IommuState(
        active=group_count > 0,
        group_count=group_count,
        units=units,
        cmdline_flags=cmdline_flags(running_cmdline(root)),
    )


def group_members(root: str, group: int) -> list[str]:
    devices_dir = os.path.join(iommu_groups_dir(root), str(group), "devices")
    return sorted(os.listdir(devices_dir)) if os.path.isdir(devices_dir) else []


def blocks_passthrough(function: PciFunction) -> bool:
    """Whether this group member keeps the group from a VM (the kernel's rule, see the module doc)."""
    if function.is_bridge or function.is_bridge_class:
        return False
    return function.driver is not None and function.driver not in DMA_MANAGING_DRIVERS


def check_card_group(root: str, card: GpuCard, functions: dict[str, PciFunction]) -> GroupCheck:
    """Which members of the card's IOMMU group, other than its own functions, block passthrough."""
    group = card.display_function.iommu_group
    if group is None:
        return GroupCheck(group=None)
    members = group_members(root, group)
    own = {f.address for f in card.functions}
    foreign = [
        functions[address]
        for address in members
        if address not in own and address in functions and blocks_passthrough(functions[address])
    ]
    return GroupCheck(group=group, members=members, foreign=foreign)
