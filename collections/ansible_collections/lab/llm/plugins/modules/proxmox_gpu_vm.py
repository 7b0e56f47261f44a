#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: proxmox_gpu_vm
short_description: Ensure a Proxmox VE VM with whole GPUs passed through, cloned from a cloud-init template
version_added: "0.1.0"
description:
  - Ensures a QEMU VM on a Proxmox VE node, cloned from a cloud-init template, set up for GPU passthrough
    (C(machine=q35), C(bios=ovmf) with an EFI disk, C(cpu=host), ballooning off, C(hostpciN) with C(pcie=1)).
  - Idempotent. Computes the difference to the VM's config and applies only that. Options that need the
    VM stopped (C(hostpci), C(machine), C(bios), CPU and a few more) stay pending on a running VM;
    with O(allow_restart=true) the module shuts it down and starts it again, otherwise it returns
    RV(restart_pending=true) and a warning.
  - Never destroys a VM unless O(state=absent), and never touches a VM that does not carry
    O(managed_tag) (for example a VM that already uses the requested O(vmid)).
  - Checks all input (node, template, mappings and PCI devices on that node, vmid, SSH keys, and every value
    Proxmox's API schema would refuse, that is name, vmid, cores, sockets, memory, machine, disk, storages, hotplug,
    tags, VLAN, MTU, nameserver) before the first write; a mapping is also checked against the node's device
    the way Proxmox checks it at VM start
    (vendor:device id, subsystem id, IOMMU group), so a stale mapping fails before a VM is cloned. Talks to
    the Proxmox API over HTTPS (proxmoxer), never SSH.
author:
  - lab-llm developers (@lab-llm)
requirements:
  - proxmoxer >= 2.0
  - requests
options:
  name:
    description: VM name (a DNS name). Finds the VM when O(vmid) is not given.
    type: str
    required: true
  node:
    description: Cluster node the VM runs on.
    type: str
    required: true
  vmid:
    description: VM id. When omitted, an existing VM is found by O(name), a new one gets C(/cluster/nextid).
    type: int
  template:
    description: Name or vmid of the cloud-init template to clone a new VM from.
    type: str
  full_clone:
    description: Full clone (independent disks) instead of a linked clone.
    type: bool
    default: true
  storage:
    description: Target storage of a full clone. The template's storage when omitted.
    type: str
  state:
    description:
      - V(present) ensures the VM and its config and leaves its power state alone.
      - V(started) and V(stopped) also ensure the power state. V(absent) destroys a managed VM.
    type: str
    choices: [present, started, stopped, absent]
    default: present
  machine:
    description: QEMU machine type; PCIe passthrough needs q35.
    type: str
    default: q35
  bios:
    description: Firmware. OVMF (UEFI) gives the best GPU compatibility; an EFI disk is added when missing.
    type: str
    choices: [ovmf, seabios]
    default: ovmf
  efidisk_storage:
    description: Storage for the EFI vars disk added when O(bios=ovmf) and the VM has none.
    type: str
    default: local-lvm
  cpu:
    description: CPU type.
    type: str
    default: host
  cpu_hidden:
    description: Hide the KVM signature from the guest (C(host,hidden=1) as CPU type).
    type: bool
    default: false
  cores:
    description: Cores per socket; at least 1 (Proxmox's API schema).
    type: int
    default: 4
  sockets:
    description: CPU sockets; at least 1 (Proxmox's API schema).
    type: int
    default: 1
  numa:
    description: Enable NUMA.
    type: bool
    default: true
  memory:
    description:
      - Memory in MiB, at least 16 (Proxmox's API schema).
      - Ballooning is always off (C(balloon=0)); passthrough pins guest memory.
    type: int
    default: 16384
  hotplug:
    description: Hotplug features (C(network,disk,usb,memory,cpu)). Not managed when omitted.
    type: str
  disk:
    description: Disk to grow to O(disk_size).
    type: str
    default: scsi0
  disk_size:
    description: Size of O(disk), for example C(64G). Disks only grow. Not managed when omitted.
    type: str
  gpus:
    description: PCI devices passed through, one C(hostpciN) per item in order; surplus C(hostpciN) are removed.
    type: list
    elements: dict
    default: []
    suboptions:
      mapping:
        description: Cluster PCI mapping to use (see M(lab.llm.proxmox_pci_mapping)). Exclusive with O(gpus[].host).
        type: str
      host:
        description:
          - Raw PCI address such as C(0000:01:00) (all functions). Exclusive with O(gpus[].mapping).
          - Proxmox lets only C(root@pam) logged in with its password set, change or delete a raw device; with
            an API token (even one of C(root@pam)) or another user the module fails before its first write
            and says to use a mapping instead.
        type: str
      pcie:
        description: Attach as PCIe (needs C(machine=q35)).
        type: bool
        default: true
      x_vga:
        description: Make this the VM's primary GPU.
        type: bool
        default: false
      rombar:
        description: Show the device ROM to the guest.
        type: bool
        default: true
  network:
    description: The VM's first NIC (C(net0)). Not managed when omitted.
    type: dict
    suboptions:
      model:
        description: NIC model.
        type: str
        default: virtio
        choices: [e1000, e1000-82540em, e1000-82544gc, e1000-82545em, e1000e, i82551, i82557b, i82559er, ne2k_isa,
                  ne2k_pci, pcnet, rtl8139, virtio, vmxnet3]
      bridge:
        description: Bridge.
        type: str
        default: vmbr0
      vlan:
        description: VLAN tag, 1 to 4094.
        type: int
      mtu:
        description: MTU (virtio only), 1 to 65520.
        type: int
  cloud_init:
    description: Cloud-init settings of the VM.
    type: dict
    suboptions:
      ciuser:
        description: Default user.
        type: str
      password:
        description: Password of the default user. Proxmox never returns it, see O(update_password).
        type: str
      sshkeys:
        description:
          - OpenSSH public keys, one per item (C(TYPE BASE64 [COMMENT]) on one line). Sent URL-encoded
            as the API requires; an item with a newline or a wrapped key fails before any write.
        type: list
        elements: str
      ipconfig0:
        description: C(ip=dhcp) or C(ip=10.0.0.21/24,gw=10.0.0.1).
        type: str
      nameserver:
        description: DNS servers.
        type: str
      searchdomain:
        description: DNS search domain.
        type: str
  update_password:
    description: V(on_create) sets the password only on a new VM (it cannot be compared); V(always) every run.
    type: str
    choices: [always, on_create]
    default: on_create
  tags:
    description: Tags of the VM; O(managed_tag) is always added.
    type: list
    elements: str
    default: []
  managed_tag:
    description: Tag that marks VMs this module may change or destroy.
    type: str
    default: lab-llm
  onboot:
    description: Start the VM when its node boots.
    type: bool
    default: true
  agent:
    description: Enable the QEMU guest agent in the VM's config.
    type: bool
    default: true
  allow_restart:
    description: Shut down and start a running VM when changed options need it.
    type: bool
    default: false
  wait_for_agent:
    description: Wait for the guest agent of a running VM and return its addresses in RV(ip_addresses).
    type: bool
    default: false
  agent_timeout:
    description: Seconds to wait for the guest agent.
    type: int
    default: 300
  wait_timeout:
    description: Seconds to wait for one Proxmox task (clone, start, ...) or a VM lock.
    type: int
    default: 900
  shutdown_timeout:
    description: Seconds a guest gets for a clean shutdown before it is stopped.
    type: int
    default: 120
extends_documentation_fragment:
  - lab.llm.proxmox
attributes:
  check_mode:
    support: full
    description: Reads the cluster and reports what would change without writing.
  diff_mode:
    support: full
    description: Returns the changed config options before and after (the password left out).
notes:
  - In check mode a running VM's pending restart is predicted from the changed option names.
  - In check mode a missing PCI mapping (or one without this node) is a warning, not an error, since a
    M(lab.llm.proxmox_pci_mapping) task before this one has not written it yet.
  - The API token needs C(VM.Clone), C(VM.Allocate), C(VM.Config.*), C(VM.PowerMgmt), C(VM.Audit),
    C(Mapping.Use) and C(VM.GuestAgent.Audit) (for O(wait_for_agent)).
  - Raw PCI devices (O(gpus[].host)) are root@pam's alone - qemu-server C(check_hostpci_perm) in
    PVE/API2/Qemu.pm, where an API token's user is its token id (C(root@pam!NAME) is not C(root@pam)).
    Use a cluster resource mapping (M(lab.llm.proxmox_pci_mapping)) with API tokens.
seealso:
  - module: lab.llm.proxmox_pci_mapping
  - name: Proxmox VE admin guide, PCI(e) passthrough
    description: VM settings for passthrough (q35, OVMF, pcie, x-vga).
    link: https://pve.proxmox.com/pve-docs/pve-admin-guide.html#qm_pci_passthrough
"""

EXAMPLES = r"""
- name: A VM with the RTX 3090 of pve2, started, its addresses returned
  lab.llm.proxmox_gpu_vm:
    api_host: pve1.example.org
    api_user: ansible@pve
    api_token_id: lab-llm
    api_token_secret: "{{ vault_pve_token_secret }}"
    name: gpu-3090-1
    node: pve2
    template: debian-12-cloudinit
    memory: 65536
    cores: 8
    disk_size: 128G
    gpus:
      - mapping: rtx3090
    network:
      bridge: vmbr0
    cloud_init:
      ciuser: debian
      sshkeys:
        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB5kP6hUoFeKk1IrWn3mWZ3IfD5mLr0wY8kQgQF2iF9x admin@lab
      ipconfig0: ip=192.0.2.31/24,gw=192.0.2.1
    state: started
    wait_for_agent: true
"""

RETURN = r"""
vmid:
  description: VM id.
  returned: success, unless a new VM was only planned in check mode
  type: int
  sample: 121
node:
  description: Node of the VM.
  returned: always
  type: str
  sample: pve2
status:
  description: Power state after the run.
  returned: success, unless check mode or O(state=absent)
  type: str
  sample: running
created:
  description: Whether the VM was cloned in this run.
  returned: when the VM was created
  type: bool
changed_options:
  description: Config options that were (or in check mode would be) changed.
  returned: when something changed
  type: list
  elements: str
  sample: [memory, hostpci1]
restart_pending:
  description: Changed options wait for a stop/start of the VM (see O(allow_restart)).
  returned: always
  type: bool
pending_options:
  description: The options that wait for the restart.
  returned: when RV(restart_pending=true)
  type: list
  elements: str
restarted:
  description: The module shut the VM down and started it to apply pending options.
  returned: when it happened
  type: bool
config:
  description: The VM's config after the run (pending values included, password left out).
  returned: success, unless check mode or O(state=absent)
  type: dict
ip_addresses:
  description: Guest addresses reported by the QEMU guest agent, IPv4 first.
  returned: when O(wait_for_agent=true) and the VM runs
  type: list
  elements: str
  sample: [192.0.2.31]
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
from ansible_collections.lab.llm.plugins.module_utils.pve.vm import NIC_MODELS
from ansible_collections.lab.llm.plugins.module_utils.pve.vm_runner import GpuVmRunner
from ansible_collections.lab.llm.plugins.module_utils.requirements import missing_library


def argument_spec() -> dict:
    spec = pve_argument_spec()
    spec.update(
        name=dict(type="str", required=True),
        node=dict(type="str", required=True),
        vmid=dict(type="int"),
        template=dict(type="str"),
        full_clone=dict(type="bool", default=True),
        storage=dict(type="str"),
        state=dict(type="str", choices=["present", "started", "stopped", "absent"], default="present"),
        machine=dict(type="str", default="q35"),
        bios=dict(type="str", choices=["ovmf", "seabios"], default="ovmf"),
        efidisk_storage=dict(type="str", default="local-lvm"),
        cpu=dict(type="str", default="host"),
        cpu_hidden=dict(type="bool", default=False),
        cores=dict(type="int", default=4),
        sockets=dict(type="int", default=1),
        numa=dict(type="bool", default=True),
        memory=dict(type="int", default=16384),
        hotplug=dict(type="str"),
        disk=dict(type="str", default="scsi0"),
        disk_size=dict(type="str"),
        gpus=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(
                mapping=dict(type="str"),
                host=dict(type="str"),
                pcie=dict(type="bool", default=True),
                x_vga=dict(type="bool", default=False),
                rombar=dict(type="bool", default=True),
            ),
            mutually_exclusive=[("mapping", "host")],
            required_one_of=[("mapping", "host")],
        ),
        network=dict(
            type="dict",
            options=dict(
                model=dict(type="str", default="virtio", choices=list(NIC_MODELS)),
                bridge=dict(type="str", default="vmbr0"),
                vlan=dict(type="int"),
                mtu=dict(type="int"),
            ),
        ),
        cloud_init=dict(
            type="dict",
            options=dict(
                ciuser=dict(type="str"),
                password=dict(type="str", no_log=True),
                sshkeys=dict(type="list", elements="str", no_log=False),
                ipconfig0=dict(type="str"),
                nameserver=dict(type="str"),
                searchdomain=dict(type="str"),
            ),
        ),
        update_password=dict(type="str", choices=["always", "on_create"], default="on_create", no_log=False),
        tags=dict(type="list", elements="str", default=[]),
        managed_tag=dict(type="str", default="lab-llm"),
        onboot=dict(type="bool", default=True),
        agent=dict(type="bool", default=True),
        allow_restart=dict(type="bool", default=False),
        wait_for_agent=dict(type="bool", default=False),
        agent_timeout=dict(type="int", default=300),
        wait_timeout=dict(type="int", default=900),
        shutdown_timeout=dict(type="int", default=120),
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
    params = module.params
    try:
        runner = GpuVmRunner(PveClient.from_params(params), params, module.check_mode)
        result = runner.run()
    except PveError as exc:
        module.fail_json(msg="VM %s on node %s: %s" % (params["name"], params["node"], exc))
    for warning in runner.warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
