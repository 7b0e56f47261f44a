#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: proxmox_pci_mapping
short_description: Ensure a Proxmox VE cluster PCI resource mapping for GPUs
version_added: "0.1.0"
description:
  - Ensures a cluster-wide PCI resource mapping (C(/cluster/mapping/pci), Proxmox VE 8) so that VMs refer
    to a GPU as C(mapping=NAME) in C(hostpci0) and keep working when the card moves to another slot.
  - Entries are kept per node. The nodes given in O(map) get exactly the given entries; entries of other
    nodes stay as they are unless O(prune=true), so one node can be added without touching the others.
  - Each entry is checked against the node's PCI devices (C(/nodes/{node}/hardware/pci)) before anything is
    written, the way Proxmox checks it when a VM starts (pve-guest-common C(PVE::Mapping::PCI::assert_valid)) -
    the vendor:device id, the subsystem id and the IOMMU group (of the first path) must match the device.
    A GPU that is not on the node, another id, or a stale IOMMU group (after a slot, BIOS or kernel change)
    fails without a change; a subsystem id or IOMMU group not given is filled in from the node, because
    Proxmox refuses to start a VM whose entry lacks one the device has ("missing expected property").
  - Talks to the Proxmox API over HTTPS (proxmoxer), never SSH.
author:
  - lab-llm developers (@lab-llm)
requirements:
  - proxmoxer >= 2.0
  - requests
options:
  name:
    description: ID of the mapping (Proxmox format C(pve-configid)), for example C(rtx3090).
    type: str
    required: true
  description:
    description: Description of the mapping. Not managed when omitted.
    type: str
  map:
    description: Devices of this mapping, one item per node and device.
    type: list
    elements: dict
    default: []
    suboptions:
      node:
        description: Cluster node name.
        type: str
        required: true
      path:
        description: PCI path of the device without function (whole device, e.g. C(0000:01:00)) or with it.
        type: str
        required: true
      id:
        description: Expected vendor and device id, C(VENDOR:DEVICE) in hex, for example C(10de:2204).
        type: str
        required: true
      subsystem_id:
        description:
          - Expected subsystem vendor and device id, C(VENDOR:DEVICE).
          - Read from the node when omitted (O(check_devices=true)); required when O(check_devices=false).
        type: str
      iommugroup:
        description:
          - Expected IOMMU group of the device (of the first path when several are given).
          - Read from the node when omitted (O(check_devices=true)); required when O(check_devices=false).
        type: int
      description:
        description: Description of this node's device.
        type: str
  prune:
    description: Remove entries of nodes that are not in O(map).
    type: bool
    default: false
  check_devices:
    description:
      - Check every entry against the node's PCI devices before writing, and fill in O(map[].subsystem_id)
        and O(map[].iommugroup) from them.
      - When false, both must be given for every entry.
    type: bool
    default: true
  state:
    description: Whether the mapping should exist.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - lab.llm.proxmox
attributes:
  check_mode:
    support: full
    description: Reads the cluster and reports what would change without writing.
  diff_mode:
    support: full
    description: Returns the mapping before and after.
notes:
  - The API token needs C(Mapping.Modify) on C(/mapping/pci) and C(Sys.Audit) on the nodes.
seealso:
  - name: Proxmox VE admin guide, Resource Mapping
    description: Cluster-wide mappings of PCI devices.
    link: https://pve.proxmox.com/pve-docs/pve-admin-guide.html#resource_mapping
"""

EXAMPLES = r"""
- name: One mapping for the RTX 3090 of three hosts
  lab.llm.proxmox_pci_mapping:
    api_host: pve1.example.org
    api_user: ansible@pve
    api_token_id: lab-llm
    api_token_secret: "{{ vault_pve_token_secret }}"
    name: rtx3090
    description: RTX 3090 24 GB
    map:
      - node: pve2
        path: "0000:01:00"
        id: "10de:2204"
        subsystem_id: "1043:87b3"
        iommugroup: 14
"""

RETURN = r"""
mapping:
  description: The mapping after the run (its entries as Proxmox property strings).
  returned: success and O(state=present)
  type: dict
  sample: {"id": "rtx3090", "description": "RTX 3090 24 GB",
           "map": ["node=pve2,path=0000:01:00,id=10de:2204,subsystem-id=1043:87b3,iommugroup=14"]}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lab.llm.plugins.module_utils.pve.client import (
    MISSING_LIBRARY,
    PROXMOXER_IMPORT_ERROR,
    PVE_REQUIRED_ONE_OF,
    PVE_REQUIRED_TOGETHER,
    PveClient,
    pve_argument_spec,
)
from ansible_collections.lab.llm.plugins.module_utils.pve.exceptions import PveError
from ansible_collections.lab.llm.plugins.module_utils.pve.mapping import ensure_mapping
from ansible_collections.lab.llm.plugins.module_utils.requirements import missing_library


def argument_spec() -> dict:
    spec = pve_argument_spec()
    spec.update(
        name=dict(type="str", required=True),
        description=dict(type="str"),
        map=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(
                node=dict(type="str", required=True),
                path=dict(type="str", required=True),
                id=dict(type="str", required=True),
                subsystem_id=dict(type="str"),
                iommugroup=dict(type="int"),
                description=dict(type="str"),
            ),
        ),
        prune=dict(type="bool", default=False),
        check_devices=dict(type="bool", default=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )
    return spec


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_one_of=PVE_REQUIRED_ONE_OF,
        required_together=PVE_REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    if PROXMOXER_IMPORT_ERROR is not None:
        module.fail_json(
            msg=missing_library(MISSING_LIBRARY, "to talk to the Proxmox VE API"), exception=PROXMOXER_IMPORT_ERROR
        )
    try:
        client = PveClient.from_params(module.params)
        result = ensure_mapping(client, module.params, module.check_mode)
    except PveError as exc:
        module.fail_json(msg="PCI mapping %s: %s" % (module.params["name"], exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
