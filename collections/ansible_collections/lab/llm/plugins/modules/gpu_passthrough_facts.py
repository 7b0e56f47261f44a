#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_passthrough_facts
short_description: Discover NVIDIA GPUs, IOMMU groups and the boot loader for PCI passthrough
version_added: "0.1.0"
description:
  - Reads C(/proc) and C(/sys) (and two files of C(/etc/kernel) for the boot loader) of a Proxmox VE 8
    / Debian 12 host and reports what GPU passthrough needs to know.
  - Reports the CPU vendor, whether the IOMMU is active (C(/sys/kernel/iommu_groups) populated) and
    which IOMMU flags the running kernel got on its command line.
  - Reports the boot loader in use (GRUB or systemd-boot, the latter on EFI hosts with ZFS root
    whose ESPs C(proxmox-boot-tool) keeps in sync), where its kernel command line is configured and
    which command applies a change.
  - Reports every PCI device of class 0x03xx from vendor 0x10de (NVIDIA) with all functions of its
    slot (HD audio, USB, UCSI), their ids, bound drivers, the kernel modules that can claim each of
    them, the IOMMU group and whether vfio can take that group.
  - Never changes anything on the host.
author:
  - lab-llm developers (@lab-llm)
options:
  root:
    description:
      - Directory that holds the C(sys) and C(proc) trees to read.
      - Tests point this at a fixture tree; on a real host keep the default.
    type: path
    default: /
  config_root:
    description:
      - Directory that holds C(etc/kernel/) (boot loader detection), C(usr/share/misc/pci.ids)
        (model names) and the C(modprobe.d) directories (vfio-pci options already set).
    type: path
    default: /
attributes:
  check_mode:
    support: full
    description: The module only reads; it runs unchanged in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
  facts:
    support: full
    description: Returns C(ansible_facts.gpu_passthrough).
notes:
  - The boot loader rules follow the Proxmox VE admin guide, chapter Host Bootloader
    (system-booting.adoc in proxmox/pve-docs).
  - A GPU whose IOMMU group is not clean cannot be passed through alone; every endpoint in a group
    goes to the same VM (Linux kernel Documentation/driver-api/vfio.rst).
  - The group rule is the kernel's DMA ownership (Linux 5.19 and later) - drivers/pci/pci-driver.c
    C(pci_dma_configure) makes every bound driver without C(driver_managed_dma) use the kernel's DMA
    domain, and C(iommu_group_claim_dma_owner) (drivers/iommu/iommu.c, called by vfio when it
    attaches the group) refuses while one does; vfio-pci, pci-stub and pcieport
    (drivers/pci/pcie/portdrv.c) set C(driver_managed_dma). At VM start Proxmox VE binds every
    non-bridge member of the group to vfio-pci (pve-common C(PVE::SysFSTools::pci_dev_group_bind_to_vfio)).
seealso:
  - module: lab.llm.kernel_cmdline
"""

EXAMPLES = r"""
- name: Discover GPUs and IOMMU state
  lab.llm.gpu_passthrough_facts:

- name: Show the passthrough-ready cards
  ansible.builtin.debug:
    msg: "{{ ansible_facts.gpu_passthrough.gpus | selectattr('iommu_group_clean') | map(attribute='address') }}"

- name: Read a captured sysfs/procfs tree instead of the live host
  lab.llm.gpu_passthrough_facts:
    root: /srv/fixtures/pve1
    config_root: /srv/fixtures/pve1
"""

RETURN = r"""
ansible_facts:
  description: Facts about GPU passthrough readiness.
  returned: always
  type: dict
  contains:
    gpu_passthrough:
      description: Everything discovered.
      returned: always
      type: dict
      contains:
        vfio_pci_ids_options:
          description:
            - Every C(options vfio-pci ... ids=...) line of the modprobe configuration (C(/etc/modprobe.d),
              C(/run/modprobe.d), C(/usr/local/lib/modprobe.d), C(/lib/modprobe.d), C(/usr/lib/modprobe.d);
              a file in C(/etc) hides one of the same name), in the order modprobe applies them; C(ids) are
              lower-case, sorted and distinct.
            - modprobe joins them and the kernel keeps only the last C(ids=) (C(module_param_string) in
              drivers/vfio/pci/vfio_pci.c), so two of them with different ids lose devices.
          type: list
          elements: dict
          sample: [{"path": "/etc/modprobe.d/vfio.conf", "ids": ["1000:0072"]}]
        cpu_vendor:
          description: C(intel), C(amd) or C(unknown), from C(/proc/cpuinfo).
          type: str
          sample: intel
        iommu:
          description: IOMMU state of the running kernel.
          type: dict
          contains:
            active:
              description: True when C(/sys/kernel/iommu_groups) holds at least one group.
              type: bool
            group_count:
              description: Number of IOMMU groups.
              type: int
            units:
              description: IOMMU hardware units in C(/sys/class/iommu) (C(dmar*) Intel, C(ivhd*) AMD).
              type: list
              elements: str
            cmdline_flags:
              description: C(intel_iommu), C(amd_iommu) and C(iommu) values from C(/proc/cmdline).
              type: dict
              sample: {"intel_iommu": "on", "iommu": "pt"}
            passthrough_mode:
              description: True when C(iommu=pt) is on the running command line.
              type: bool
        boot_loader:
          description: The boot loader in use and how to change its kernel command line.
          type: dict
          contains:
            name:
              description: C(grub) or C(systemd-boot).
              type: str
            efi:
              description: True when the host booted through UEFI.
              type: bool
            proxmox_boot_tool:
              description: True when C(/etc/kernel/proxmox-boot-uuids) lists synced ESPs.
              type: bool
            cmdline_file:
              description: C(/etc/default/grub) or C(/etc/kernel/cmdline).
              type: str
            refresh_command:
              description: Command that applies a command line change.
              type: list
              elements: str
              sample: ["update-grub"]
            evidence:
              description: Why the module decided so, one reason per item.
              type: list
              elements: str
        gpus:
          description: One item per NVIDIA card (class 0x03xx function of vendor 0x10de), by address.
          type: list
          elements: dict
          contains:
            address:
              description: PCI slot (domain:bus:device) shared by all functions of the card.
              type: str
              sample: "0000:01:00"
            model:
              description: Marketing name of the display function, or null when unknown.
              type: str
              sample: GeForce RTX 3090
            functions:
              description: All functions of the slot.
              type: list
              elements: dict
              contains:
                address:
                  description: Full PCI address of the function.
                  type: str
                  sample: "0000:01:00.0"
                vendor_id:
                  description: Vendor id, 4 hex digits.
                  type: str
                  sample: "10de"
                device_id:
                  description: Device id, 4 hex digits.
                  type: str
                  sample: "2204"
                subsystem_vendor_id:
                  description: Subsystem vendor id (board maker).
                  type: str
                subsystem_device_id:
                  description: Subsystem device id.
                  type: str
                class:
                  description: PCI class code, 6 hex digits.
                  type: str
                  sample: "030000"
                driver:
                  description: Driver bound now, or null.
                  type: str
                  sample: vfio-pci
                driver_module:
                  description: Kernel module of that driver (C(driver/module) in sysfs), or null when none or built in.
                  type: str
                  sample: xhci_pci
                host_drivers:
                  description:
                    - Kernel modules that can claim this function on the host, C(vfio_pci) and C(pci_stub) left out.
                    - The bound driver's module plus every module whose C(modules.alias) pattern matches the
                      function's C(modalias), as modprobe matches them; by PCI class when C(modules.alias)
                      of the running kernel cannot be read.
                  type: list
                  elements: str
                  sample: [i2c_nvidia_gpu]
                iommu_group:
                  description: IOMMU group number, or null when the IOMMU is off.
                  type: int
                name:
                  description: Device name from pci.ids or the built-in table, or null.
                  type: str
            vfio_ids:
              description: Distinct vendor:device ids of the card's functions, for C(vfio-pci ids=).
              type: list
              elements: str
              sample: ["10de:2204", "10de:1aef"]
            host_drivers:
              description:
                - Union of the functions' RV(ansible_facts.gpu_passthrough.gpus[].functions[].host_drivers).
                - "The modules that must load after C(vfio-pci) (C(softdep MODULE pre: vfio-pci))."
              type: list
              elements: str
              sample: [i2c_nvidia_gpu, nouveau, nvidiafb, snd_hda_intel, xhci_pci]
            same_ids_elsewhere:
              description:
                - Functions outside this card with one of its vendor:device ids, for example the
                  functions of an identical second card.
                - C(options vfio-pci ids=) would take them from the host as well.
              type: list
              elements: str
              sample: ["0000:02:00.0", "0000:02:00.1"]
            bound_to_vfio:
              description: True when every function of the card is bound to C(vfio-pci).
              type: bool
            iommu_group:
              description: IOMMU group of the display function, or null when the IOMMU is off.
              type: int
              sample: 14
            iommu_group_members:
              description: Addresses of every device in that group.
              type: list
              elements: str
            iommu_group_clean:
              description:
                - True when no other member of the group keeps it from a VM, by the kernel's rule.
                - Bridges (class 0x06xx), devices without a driver and devices bound to a driver that
                  manages DMA itself (C(vfio-pci), C(pci-stub), C(pcieport)) do not; a device bound to
                  any other host driver does.
                - Sources are in the notes.
              type: bool
            foreign_devices:
              description: Members of the group, other than the card's functions, that keep it from a VM.
              type: list
              elements: dict
              sample: [{"address": "0000:03:00.0", "vendor_id": "8086", "device_id": "1533",
                        "class": "020000", "driver": "igb"}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lab.llm.plugins.module_utils.passthrough_facts import FactsError, gather


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "default": "/"},
            "config_root": {"type": "path", "default": "/"},
        },
        supports_check_mode=True,
    )
    try:
        facts = gather(module.params["root"], module.params["config_root"])
    except FactsError as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=False, ansible_facts={"gpu_passthrough": facts})


if __name__ == "__main__":
    main()
