#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kernel_cmdline
short_description: Ensure kernel parameters are present or absent for the boot loader in use
version_added: "0.1.0"
description:
  - Adds or removes kernel command line parameters where the host's boot loader reads them, and
    keeps every other parameter and every other line as it is.
  - With GRUB, works out what C(update-grub) really passes to the kernel - it sources C(/etc/default/grub),
    then every C(/etc/default/grub.d/*.cfg) in name order, and boots with C(GRUB_CMDLINE_LINUX) followed by
    C(GRUB_CMDLINE_LINUX_DEFAULT) - and edits the C(GRUB_CMDLINE_LINUX_DEFAULT) assignment that wins (in
    C(/etc/default/grub) or in the drop-in that sets it last), or manages a drop-in
    C(/etc/default/grub.d/<grub_dropin>) that appends the parameters.
  - Before writing it evaluates the whole chain again with the change in place. When the kernel would
    still not get the wanted parameters (a drop-in sorted after O(grub_dropin) overwrites the variable, or
    a parameter to remove comes from C(GRUB_CMDLINE_LINUX)), it fails naming the file and line and
    changes nothing. A line that touches the two variables other than as a plain assignment
    (C(NAME="..."), C(NAME="$NAME ..."), C(export NAME=...)) also fails, rather than being guessed.
  - With systemd-boot (Proxmox VE on ZFS root booted through UEFI), edits the single line of
    C(/etc/kernel/cmdline).
  - Does not run the refresh command; it returns whether one is needed and which, so the caller can
    notify a handler (C(update-grub) or C(proxmox-boot-tool refresh)).
  - Also reports whether the running kernel (C(/proc/cmdline)) already matches, which tells the
    caller whether a reboot is still outstanding.
author:
  - lab-llm developers (@lab-llm)
options:
  params:
    description:
      - Kernel parameters, each C(key) or C(key=value), without spaces or quotes.
      - With O(state=present), a parameter whose key is already there with another value is
        replaced in place (C(intel_iommu=off) becomes C(intel_iommu=on)).
      - Keys the kernel reads once per occurrence (C(console), C(video), C(initcall_blacklist), C(memmap),
        C(acpi_osi), C(hugepagesz), C(hugepages)) and any key given more than once here are added next to
        the ones already there, never replaced, so O(params=[video=efifb:off, video=vesafb:off]) keeps both.
      - With O(state=absent), C(key=value) removes exactly that token and a bare C(key) removes the
        key with any value.
    type: list
    elements: str
    required: true
  state:
    description: Whether the parameters must be present or absent.
    type: str
    choices: [present, absent]
    default: present
  boot_loader:
    description:
      - The boot loader whose configuration to edit.
      - V(auto) detects it like M(lab.llm.gpu_passthrough_facts) does.
    type: str
    choices: [auto, grub, systemd-boot]
    default: auto
  grub_dropin:
    description:
      - File name (ending in C(.cfg)) of a drop-in in C(/etc/default/grub.d/) that appends the
        parameters to C(GRUB_CMDLINE_LINUX_DEFAULT), instead of editing the assignment that wins.
      - The drop-in belongs to this module; it is removed when no parameter is left in it. It must sort
        after every drop-in that sets C(GRUB_CMDLINE_LINUX_DEFAULT) without keeping the earlier value,
        or the module fails.
      - Only used with GRUB. When unset, the last C(GRUB_CMDLINE_LINUX_DEFAULT) assignment that
        C(update-grub) reads is edited (C(/etc/default/grub) on a stock Proxmox VE host).
    type: str
  root:
    description: Directory holding the C(proc) and C(sys) trees read for detection and for the running command line.
    type: path
    default: /
  config_root:
    description: Directory holding the C(etc) tree to edit. Tests point this at a temporary directory.
    type: path
    default: /
attributes:
  check_mode:
    support: full
    description: Reports what would change without writing.
  diff_mode:
    support: full
    description: Returns the file before and after.
notes:
  - File locations and refresh commands follow the Proxmox VE admin guide, section "Editing the
    Kernel Commandline" (system-booting.adoc in proxmox/pve-docs).
  - The GRUB order is grub-mkconfig's (C(. /etc/default/grub), then C(for x in /etc/default/grub.d/*.cfg)),
    and the default entry's parameters are those of util/grub.d/10_linux.in
    (C(${GRUB_CMDLINE_LINUX} ${GRUB_CMDLINE_LINUX_DEFAULT})).
  - Parameters starting with C(pcie_acs_override) produce a warning; they split IOMMU groups by
    pretending devices are isolated when the hardware does not promise it.
seealso:
  - module: lab.llm.gpu_passthrough_facts
"""

EXAMPLES = r"""
- name: Turn on the Intel IOMMU in passthrough mode
  lab.llm.kernel_cmdline:
    params: [intel_iommu=on, iommu=pt]
  register: iommu_cmdline
  notify: Refresh boot loader

- name: Keep lab-llm's parameters in a GRUB drop-in
  lab.llm.kernel_cmdline:
    params: [iommu=pt]
    grub_dropin: lab-llm.cfg

- name: Remove the ACS override, whatever its value
  lab.llm.kernel_cmdline:
    params: [pcie_acs_override]
    state: absent
"""

RETURN = r"""
boot_loader:
  description: The boot loader whose configuration was handled.
  returned: always
  type: str
  sample: grub
path:
  description: The file that holds the parameters (the one edited, or that would be).
  returned: always
  type: str
  sample: /etc/default/grub
configured_before:
  description:
    - The kernel parameters the boot loader's configuration gives before the change. With GRUB,
      C(GRUB_CMDLINE_LINUX) then C(GRUB_CMDLINE_LINUX_DEFAULT) after sourcing every file as
      C(update-grub) does; with systemd-boot, C(/etc/kernel/cmdline).
  returned: always
  type: list
  elements: str
  sample: [quiet]
configured_after:
  description: The same after the change; what the next boot gets once the boot loader is refreshed.
  returned: always
  type: list
  elements: str
  sample: [quiet, intel_iommu=on, iommu=pt]
refresh_needed:
  description: True when the file changed and the boot loader configuration must be regenerated.
  returned: always
  type: bool
refresh_command:
  description: The command that regenerates it.
  returned: always
  type: list
  elements: str
  sample: [update-grub]
running_cmdline_matches:
  description: True when the running kernel's C(/proc/cmdline) already has the wanted state.
  returned: always
  type: bool
reboot_needed:
  description: True when the running kernel does not have the wanted state yet (a reboot is outstanding).
  returned: always
  type: bool
diff:
  description: The file before and after, when it changed.
  returned: changed and diff mode
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lab.llm.plugins.module_utils.bootloader import BOOT_LOADERS
from ansible_collections.lab.llm.plugins.module_utils.bootloader_cmdline import CmdlineError
from ansible_collections.lab.llm.plugins.module_utils.bootloader_runner import KernelCmdlineRunner


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "params": {"type": "list", "elements": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "boot_loader": {"type": "str", "choices": ["auto", *BOOT_LOADERS], "default": "auto"},
            "grub_dropin": {"type": "str"},
            "root": {"type": "path", "default": "/"},
            "config_root": {"type": "path", "default": "/"},
        },
        supports_check_mode=True,
    )
    runner = KernelCmdlineRunner(module.params, module.check_mode, module._diff, module.atomic_move)
    try:
        result = runner.run()
    except CmdlineError as error:
        module.fail_json(msg=str(error))
    for warning in runner.warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
