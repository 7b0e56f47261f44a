# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: pci_mapping_entries
short_description: Proxmox PCI mapping entries of the GPUs the host stage found
version_added: "0.1.0"
author: lab-llm developers (@lab-llm)
description:
  - Turns the GPUs of one Proxmox node, as M(lab.llm.gpu_passthrough_facts) reports them (and the role
    C(lab.llm.proxmox_gpu_host) exports them as C(lab_llm_gpus)), into the entries M(lab.llm.proxmox_pci_mapping)
    takes in O(lab.llm.proxmox_pci_mapping#module:map) (without C(node)).
  - Each card is described by its display function (the one whose address ends in C(.0), else its first function);
    C(path) is the card's address, C(id) the function's C(vendor:device), C(subsystem_id) its
    C(subsystem vendor:device) or null when either half is unknown, C(iommugroup) the card's IOMMU group or null.
options:
  _input:
    description: The GPUs, each with C(address), C(functions) (C(address), C(vendor_id), C(device_id),
      C(subsystem_vendor_id), C(subsystem_device_id)) and C(iommu_group).
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: The mapping entries of the cards the host stage found on pve2
  ansible.builtin.debug:
    msg: "{{ hostvars['pve2'].lab_llm_gpus | lab.llm.pci_mapping_entries }}"
"""

RETURN = r"""
_value:
  description: One entry per GPU, in the order given, with C(path), C(id), C(subsystem_id) and C(iommugroup).
  type: list
  elements: dict
"""

from typing import Any

from ansible.errors import AnsibleFilterError


def _display_function(gpu: dict[str, Any]) -> dict[str, Any]:
    functions = gpu.get("functions") or []
    if not functions:
        raise AnsibleFilterError("pci_mapping_entries: GPU %s lists no PCI functions" % gpu.get("address"))
    return next((f for f in functions if str(f.get("address", "")).endswith(".0")), functions[0])


def pci_mapping_entries(gpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not isinstance(gpus, (list, tuple)) or not all(isinstance(gpu, dict) and gpu.get("address") for gpu in gpus):
        raise AnsibleFilterError("pci_mapping_entries: expected a list of GPUs with an address, got %r" % (gpus,))
    entries = []
    for gpu in gpus:
        display = _display_function(gpu)
        subsystem = None
        if display.get("subsystem_vendor_id") and display.get("subsystem_device_id"):
            subsystem = "%s:%s" % (display["subsystem_vendor_id"], display["subsystem_device_id"])
        entries.append(
            {
                "path": gpu["address"],
                "id": "%s:%s" % (display["vendor_id"], display["device_id"]),
                "subsystem_id": subsystem,
                "iommugroup": gpu.get("iommu_group"),
            }
        )
    return entries


class FilterModule:
    def filters(self) -> dict:
        return {"pci_mapping_entries": pci_mapping_entries}
