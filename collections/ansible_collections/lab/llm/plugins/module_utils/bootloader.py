# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which boot loader a Proxmox VE 8 host uses, and where its kernel command line is configured.

Facts from the Proxmox VE admin guide, chapter "Host Bootloader" (proxmox/pve-docs,
system-booting.adoc): EFI systems installed with ZFS root boot with systemd-boot, everything
else with GRUB. GRUB reads GRUB_CMDLINE_LINUX_DEFAULT from /etc/default/grub (and snippets in
/etc/default/grub.d/*.cfg) and is applied with ``update-grub``; systemd-boot reads one line
from /etc/kernel/cmdline and is applied with ``proxmox-boot-tool refresh``, which also
manages the ESPs listed in /etc/kernel/proxmox-boot-uuids (and then update-grub calls it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

GRUB = "grub"
SYSTEMD_BOOT = "systemd-boot"
BOOT_LOADERS = (GRUB, SYSTEMD_BOOT)
GRUB_DEFAULTS_FILE = "etc/default/grub"
GRUB_DROPIN_DIR = "etc/default/grub.d"
KERNEL_CMDLINE_FILE = "etc/kernel/cmdline"
PROXMOX_BOOT_UUIDS_FILE = "etc/kernel/proxmox-boot-uuids"
REFRESH_COMMANDS = {GRUB: ["update-grub"], SYSTEMD_BOOT: ["proxmox-boot-tool", "refresh"]}


@dataclass
class BootLoader:
    """The detected boot loader, the file its command line lives in and how to apply a change."""

    name: str
    efi: bool
    proxmox_boot_tool: bool
    evidence: list[str] = field(default_factory=list)

    @property
    def cmdline_file(self) -> str:
        return "/" + (KERNEL_CMDLINE_FILE if self.name == SYSTEMD_BOOT else GRUB_DEFAULTS_FILE)

    @property
    def refresh_command(self) -> list[str]:
        return list(REFRESH_COMMANDS[self.name])

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "efi": self.efi,
            "proxmox_boot_tool": self.proxmox_boot_tool,
            "cmdline_file": self.cmdline_file,
            "refresh_command": self.refresh_command,
            "evidence": self.evidence,
        }


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def detect_boot_loader(root: str, config_root: str) -> BootLoader:
    """Decide from /proc/cmdline first (what actually booted), then from the ESP/sync configuration.

    GRUB passes ``BOOT_IMAGE=`` to the kernel; systemd-boot entries written by proxmox-boot-tool
    pass ``initrd=\\EFI\\proxmox\\...``. Without either, an EFI host whose ESPs are synced by
    proxmox-boot-tool and that has /etc/kernel/cmdline is taken as systemd-boot.
    """
    efi = os.path.isdir(os.path.join(root, "sys", "firmware", "efi"))
    managed = bool(_read_text(os.path.join(config_root, PROXMOX_BOOT_UUIDS_FILE)).strip())
    has_kernel_cmdline = os.path.isfile(os.path.join(config_root, KERNEL_CMDLINE_FILE))
    tokens = _read_text(os.path.join(root, "proc", "cmdline")).split()
    evidence = [
        "EFI firmware (/sys/firmware/efi)" if efi else "legacy BIOS boot (no /sys/firmware/efi)",
    ]
    if managed:
        evidence.append("ESPs synced by proxmox-boot-tool (/etc/kernel/proxmox-boot-uuids)")
    if any(t.startswith("BOOT_IMAGE=") for t in tokens):
        evidence.append("/proc/cmdline has BOOT_IMAGE= (set by GRUB)")
        name = GRUB
    elif any(t.lower().startswith("initrd=\\efi\\") for t in tokens):
        evidence.append("/proc/cmdline has initrd=\\EFI\\... (set by a systemd-boot entry)")
        name = SYSTEMD_BOOT
    elif efi and managed and has_kernel_cmdline:
        evidence.append("/etc/kernel/cmdline exists on an EFI host synced by proxmox-boot-tool")
        name = SYSTEMD_BOOT
    else:
        evidence.append("no systemd-boot markers: GRUB, the Proxmox default")
        name = GRUB
    return BootLoader(name=name, efi=efi, proxmox_boot_tool=managed, evidence=evidence)
