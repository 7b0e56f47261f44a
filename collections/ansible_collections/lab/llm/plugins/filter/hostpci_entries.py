# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: hostpci_entries
short_description: The hostpci entries of a GPU VM, by cluster PCI mapping or by raw address
version_added: "0.1.0"
author: lab-llm developers (@lab-llm)
description:
  - One entry of M(lab.llm.proxmox_gpu_vm)'s O(lab.llm.proxmox_gpu_vm#module:gpus) per GPU, all with C(pcie=true).
  - With a mapping name, every entry is C(mapping=NAME) (Proxmox picks a free device of the mapping on the VM's
    node); with an empty name, each entry passes its card by C(host=path).
positional: mapping, x_vga
options:
  _input:
    description: The GPUs, each with C(path) (as M(lab.llm.proxmox_pci_mapping) takes them).
    type: list
    elements: dict
    required: true
  mapping:
    description: Name of the cluster PCI mapping, or an empty string for raw addresses.
    type: str
    required: true
  x_vga:
    description: Value of C(x_vga) on every entry.
    type: bool
    required: true
"""

EXAMPLES = r"""
- name: The hostpci entries of the cards of gpu_vm_devices, by the rtx3090 mapping
  ansible.builtin.debug:
    msg: "{{ gpu_vm_devices | lab.llm.hostpci_entries('rtx3090', false) }}"
"""

RETURN = r"""
_value:
  description: One entry per GPU, in the order given, with C(mapping) or C(host), C(pcie) and C(x_vga).
  type: list
  elements: dict
"""

from typing import Any

from ansible.errors import AnsibleFilterError


def hostpci_entries(devices: list[dict[str, Any]], mapping: str, x_vga: bool) -> list[dict[str, Any]]:
    if not isinstance(devices, (list, tuple)) or not all(isinstance(device, dict) for device in devices):
        raise AnsibleFilterError("hostpci_entries: expected a list of GPUs, got %r" % (devices,))
    if mapping:
        return [{"mapping": mapping, "pcie": True, "x_vga": x_vga} for _device in devices]
    missing = [index for index, device in enumerate(devices) if not device.get("path")]
    if missing:
        raise AnsibleFilterError(
            "hostpci_entries: without a mapping every GPU needs its path; GPU %d has none" % missing[0]
        )
    return [{"host": device["path"], "pcie": True, "x_vga": x_vga} for device in devices]


class FilterModule:
    def filters(self) -> dict:
        return {"hostpci_entries": hostpci_entries}
