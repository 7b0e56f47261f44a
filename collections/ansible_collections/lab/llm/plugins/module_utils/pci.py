# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read PCI functions from sysfs and group NVIDIA GPUs with their sibling functions.

Layout per the kernel ABI (Documentation/ABI/testing/sysfs-bus-pci): one directory per
function under /sys/bus/pci/devices/<domain:bus:device.function> with files ``vendor``,
``device``, ``subsystem_vendor``, ``subsystem_device``, ``class`` (hex strings) and ``modalias``,
a ``driver`` symlink when a driver is bound (``driver/module`` links to the kernel module unless the
driver is built in), an ``iommu_group`` symlink when the IOMMU is on, and a ``pci_bus`` directory
when the function is a bridge with a secondary bus (a type-1 header).

Which kernel modules may claim a function: the ones whose ``alias pci:...`` patterns in
``/lib/modules/$(uname -r)/modules.alias`` match its ``modalias``, as modprobe matches them (kmod,
fnmatch globs; ``-`` and ``_`` are the same in module names).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field

NVIDIA_VENDOR_ID = "10de"
DISPLAY_CLASS_PREFIX = "03"  # 0x03xxxx: VGA (0x0300), 3D controller (0x0302), ...
BRIDGE_CLASS_PREFIX = "0604"  # PCI-to-PCI bridge: root ports and switch ports
BRIDGE_BASE_CLASS = "06"  # 0x06xx: host, ISA, PCI-to-PCI, ... bridges
# Drivers that are not host drivers of a passed-through function: vfio-pci takes it, pci-stub parks it.
PASSTHROUGH_MODULES = ("vfio_pci", "pci_stub")
# When modules.alias cannot be read: the modules that claim a function of an NVIDIA card, by PCI class
# (from the drivers' pci_device_id tables: nouveau and nvidiafb take NVIDIA display classes, the
# proprietary nvidia module too; snd_hda_intel every HD audio class; xhci_pci every USB xHCI class;
# i2c_nvidia_gpu NVIDIA's serial-bus class 0x0c80, the USB-C UCSI controller of Turing cards).
CLASS_MODULES = {
    "0300": ("nouveau", "nvidiafb", "nvidia"),
    "0302": ("nouveau", "nvidia"),
    "0403": ("snd_hda_intel",),
    "0c0330": ("xhci_pci",),
    "0c80": ("i2c_nvidia_gpu",),
}
MODULES_ALIAS = "modules.alias"
# Driver names (sysfs drivers/<name>) that differ from their module, for a tree without driver/module links.
DRIVER_MODULES = {"xhci_hcd": "xhci_pci", "nvidia-gpu": "i2c_nvidia_gpu", "ehci-pci": "ehci_pci"}
BUILT_IN_DRIVERS = ("pcieport",)

# Names for the cards people run in labs like ours, checked against pci.ids (hwdata, 2023).
# The module prefers a pci.ids file on the host when one exists; this is the fallback.
KNOWN_MODELS = {
    "10de:2204": "GeForce RTX 3090",
    "10de:2203": "GeForce RTX 3090 Ti",
    "10de:2206": "GeForce RTX 3080",
    "10de:2208": "GeForce RTX 3080 Ti",
    "10de:2484": "GeForce RTX 3070",
    "10de:2503": "GeForce RTX 3060",
    "10de:2504": "GeForce RTX 3060 Lite Hash Rate",
    "10de:2684": "GeForce RTX 4090",
    "10de:2230": "RTX A6000",
    "10de:1aef": "GA102 High Definition Audio Controller",
    "10de:228e": "GA106 High Definition Audio Controller",
}
PCI_IDS_PATHS = ("usr/share/misc/pci.ids", "usr/share/hwdata/pci.ids")


@dataclass
class PciFunction:
    """One PCI function (e.g. 0000:01:00.1) as sysfs reports it; ids are 4 lowercase hex digits."""

    address: str
    vendor_id: str
    device_id: str
    subsystem_vendor_id: str
    subsystem_device_id: str
    pci_class: str  # 6 hex digits: class, subclass, prog-if
    driver: str | None
    iommu_group: int | None
    driver_module: str | None = None  # kernel module of the bound driver; None when none or built in
    modalias: str = ""
    secondary_bus: bool = False  # has a pci_bus directory: a bridge vfio-pci cannot take

    @property
    def slot(self) -> str:
        """domain:bus:device, the part all functions of one card share."""
        return self.address.rsplit(".", 1)[0]

    @property
    def vendor_device(self) -> str:
        return f"{self.vendor_id}:{self.device_id}"

    @property
    def is_bridge(self) -> bool:
        """A PCI-to-PCI bridge (root or switch port): it has a secondary bus, or class 0x0604."""
        return self.secondary_bus or self.pci_class.startswith(BRIDGE_CLASS_PREFIX)

    @property
    def is_bridge_class(self) -> bool:
        """Any bridge class 0x06xx (host, ISA, PCI, other): routes transactions, does no DMA of its own."""
        return self.pci_class.startswith(BRIDGE_BASE_CLASS)

    def as_dict(self) -> dict:
        return {
            "address": self.address,
            "vendor_id": self.vendor_id,
            "device_id": self.device_id,
            "subsystem_vendor_id": self.subsystem_vendor_id,
            "subsystem_device_id": self.subsystem_device_id,
            "class": self.pci_class,
            "driver": self.driver,
            "driver_module": self.driver_module,
            "iommu_group": self.iommu_group,
        }


@dataclass
class GpuCard:
    """An NVIDIA display device and the other functions of the same slot (audio, USB, UCSI)."""

    slot: str
    functions: list[PciFunction] = field(default_factory=list)

    @property
    def display_function(self) -> PciFunction:
        return next(f for f in self.functions if f.pci_class.startswith(DISPLAY_CLASS_PREFIX))


def _read_hex(path: str) -> str:
    with open(path, encoding="ascii") as handle:
        value = handle.read().strip().lower()
    return value[2:] if value.startswith("0x") else value


def _link_basename(path: str) -> str | None:
    if not os.path.islink(path):
        return None
    return os.path.basename(os.readlink(path))


def pci_devices_dir(root: str) -> str:
    return os.path.join(root, "sys", "bus", "pci", "devices")


def module_name(name: str) -> str:
    """Kernel module names treat ``-`` and ``_`` alike (kmod); ``_`` is the canonical spelling."""
    return name.replace("-", "_")


def read_function(root: str, address: str) -> PciFunction:
    """Read one function's ids, class, bound driver (and its module), modalias and IOMMU group."""
    device_dir = os.path.join(pci_devices_dir(root), address)
    group = _link_basename(os.path.join(device_dir, "iommu_group"))
    driver = _link_basename(os.path.join(device_dir, "driver"))
    module = _link_basename(os.path.join(device_dir, "driver", "module"))
    if module is None and driver is not None and driver not in BUILT_IN_DRIVERS:
        module = DRIVER_MODULES.get(driver, driver)
    try:
        with open(os.path.join(device_dir, "modalias"), encoding="ascii") as handle:
            modalias = handle.read().strip()
    except FileNotFoundError:
        modalias = ""
    return PciFunction(
        address=address,
        vendor_id=_read_hex(os.path.join(device_dir, "vendor")),
        device_id=_read_hex(os.path.join(device_dir, "device")),
        subsystem_vendor_id=_read_hex(os.path.join(device_dir, "subsystem_vendor")),
        subsystem_device_id=_read_hex(os.path.join(device_dir, "subsystem_device")),
        pci_class=_read_hex(os.path.join(device_dir, "class")),
        driver=driver,
        iommu_group=int(group) if group is not None else None,
        driver_module=module_name(module) if module else None,
        modalias=modalias,
        secondary_bus=os.path.isdir(os.path.join(device_dir, "pci_bus")),
    )


def read_all_functions(root: str) -> dict[str, PciFunction]:
    """Every PCI function of the host, keyed by address."""
    devices_dir = pci_devices_dir(root)
    if not os.path.isdir(devices_dir):
        return {}
    return {address: read_function(root, address) for address in sorted(os.listdir(devices_dir))}


def nvidia_gpu_cards(functions: dict[str, PciFunction]) -> list[GpuCard]:
    """NVIDIA cards (a class 0x03xx function of vendor 0x10de) with all functions of their slot."""
    gpu_slots = sorted(
        {
            f.slot
            for f in functions.values()
            if f.vendor_id == NVIDIA_VENDOR_ID and f.pci_class.startswith(DISPLAY_CLASS_PREFIX)
        }
    )
    return [GpuCard(slot, [f for f in functions.values() if f.slot == slot]) for slot in gpu_slots]


def read_pci_ids_names(root: str, wanted: set[str]) -> dict[str, str]:
    """Device names for ``wanted`` vendor:device ids from the host's pci.ids, if it has one."""
    for relative in PCI_IDS_PATHS:
        path = os.path.join(root, relative)
        if os.path.isfile(path):
            return _parse_pci_ids(path, wanted)
    return {}


def _parse_pci_ids(path: str, wanted: set[str]) -> dict[str, str]:
    # Format: "vvvv  Vendor" at column 0, "\tdddd  Device" below it, "\t\t" subsystems.
    names: dict[str, str] = {}
    wanted_vendors = {w.split(":")[0] for w in wanted}
    vendor = None
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip() or line.startswith("#"):
                continue
            if not line.startswith("\t"):
                vendor = line[:4].lower()
                continue
            if line.startswith("\t\t") or vendor not in wanted_vendors:
                continue
            key = f"{vendor}:{line[1:5].lower()}"
            if key in wanted:
                names[key] = _marketing_name(line[5:].strip())
    return names


def _marketing_name(pci_ids_name: str) -> str:
    """ "GA102 [GeForce RTX 3090]" -> "GeForce RTX 3090"; names without brackets stay as they are."""
    if "[" in pci_ids_name and pci_ids_name.endswith("]"):
        return pci_ids_name[pci_ids_name.index("[") + 1 : -1]
    return pci_ids_name


def model_names(root: str, ids: set[str]) -> dict[str, str]:
    """Model names for vendor:device ids: the host's pci.ids first, then KNOWN_MODELS."""
    names = {i: KNOWN_MODELS[i] for i in ids if i in KNOWN_MODELS}
    names.update(read_pci_ids_names(root, ids))
    return names


def kernel_release(root: str) -> str:
    """``uname -r`` of the running kernel, from /proc/sys/kernel/osrelease; empty when unknown."""
    try:
        with open(os.path.join(root, "proc", "sys", "kernel", "osrelease"), encoding="ascii") as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return ""


def read_pci_aliases(root: str) -> list[tuple[str, str]] | None:
    """``(pattern, module)`` for every ``alias pci:...`` line of the running kernel's modules.alias,
    or None when there is none to read."""
    release = kernel_release(root)
    path = os.path.join(root, "lib", "modules", release, MODULES_ALIAS)
    if not release or not os.path.isfile(path):
        return None
    aliases = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            words = line.split()
            if len(words) == 3 and words[0] == "alias" and words[1].startswith("pci:"):
                aliases.append((words[1], module_name(words[2])))
    return aliases


def host_modules(function: PciFunction, aliases: list[tuple[str, str]] | None) -> list[str]:
    """Kernel modules that can claim ``function`` on the host (vfio-pci and pci-stub left out).

    The bound driver's module, plus every module whose modules.alias pattern matches the function's
    modalias (what udev/modprobe would load for it); without modules.alias, the modules CLASS_MODULES
    names for its class.
    """
    found = set()
    if function.driver_module:
        found.add(function.driver_module)
    if aliases is not None and function.modalias:
        found.update(module for pattern, module in aliases if fnmatch.fnmatchcase(function.modalias, pattern))
    else:
        for prefix, modules in CLASS_MODULES.items():
            if function.pci_class.startswith(prefix):
                found.update(modules)
    return sorted(found - set(PASSTHROUGH_MODULES))


# -- vfio-pci ids= already configured for modprobe ---------------------------------------------------
#
# modprobe.d(5) (kmod): configuration files are /lib/modprobe.d, /usr/local/lib/modprobe.d,
# /run/modprobe.d and /etc/modprobe.d/*.conf, read in name order, a file in /etc hiding one of the same
# name elsewhere; a line ending in "\" continues on the next; "#" starts a comment; "-" and "_" are the
# same in module names. modprobe joins the options of every "options MODULE ..." line, and vfio-pci's
# "ids" is a string parameter (drivers/vfio/pci/vfio_pci.c, module_param_string), so when two lines set
# ids= the kernel keeps only the last one.
MODPROBE_DIRS = ("etc/modprobe.d", "run/modprobe.d", "usr/local/lib/modprobe.d", "lib/modprobe.d", "usr/lib/modprobe.d")


def read_vfio_pci_ids_options(config_root: str) -> list[dict]:
    """``[{"path": "/etc/modprobe.d/x.conf", "ids": ["10de:1aef", "10de:2204"]}]``: every ``options vfio-pci``
    line that sets ``ids=`` (its ids lower-case, sorted, once each), in the order modprobe applies them
    (the last one wins)."""
    files: dict[str, str] = {}
    for directory in MODPROBE_DIRS:  # the first directory holding a name hides the others
        full = os.path.join(config_root, directory)
        if os.path.isdir(full):
            for name in os.listdir(full):
                if name.endswith(".conf") and name not in files and os.path.isfile(os.path.join(full, name)):
                    files[name] = directory
    found = []
    for name in sorted(files):
        path = os.path.join(config_root, files[name], name)
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read().replace("\\\n", " ")
        for line in text.splitlines():
            words = line.split("#", 1)[0].split()
            if len(words) < 3 or words[0] != "options" or module_name(words[1]) != "vfio_pci":
                continue
            for word in words[2:]:
                key, separator, value = word.partition("=")
                if separator and key == "ids":
                    ids = sorted({i.strip().lower() for i in value.strip("\"'").split(",") if i.strip()})
                    found.append({"path": "/" + files[name] + "/" + name, "ids": ids})
    return found
