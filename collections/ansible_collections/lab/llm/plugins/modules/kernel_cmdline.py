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
  - With GRUB, edits C(GRUB_CMDLINE_LINUX_DEFAULT) in C(/etc/default/grub), or manages a drop-in
    C(/etc/default/grub.d/<grub_dropin>) that appends the parameters.
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
        parameters to C(GRUB_CMDLINE_LINUX_DEFAULT), instead of editing C(/etc/default/grub).
      - The drop-in belongs to this module; it is removed when no parameter is left in it.
      - Only used with GRUB. When unset, C(/etc/default/grub) is edited.
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
  description: The file that holds the parameters.
  returned: always
  type: str
  sample: /etc/default/grub
configured_before:
  description: Parameters in that file before the change (for a drop-in, only the ones it appends).
  returned: always
  type: list
  elements: str
  sample: [quiet]
configured_after:
  description: Parameters in that file after the change.
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

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lab.llm.plugins.module_utils.bootloader import (
    GRUB,
    GRUB_DEFAULTS_FILE,
    GRUB_DROPIN_DIR,
    KERNEL_CMDLINE_FILE,
    REFRESH_COMMANDS,
    SYSTEMD_BOOT,
    detect_boot_loader,
)
from ansible_collections.lab.llm.plugins.module_utils.bootloader_cmdline import (
    CmdlineError,
    apply_params,
    cmdline_satisfies,
    dropin_tokens,
    edit_grub_defaults,
    edit_kernel_cmdline,
    grub_default_tokens,
    invalid_params,
    render_dropin,
)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _write(module: AnsibleModule, path: str, content: str) -> None:
    mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o644
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".kernel_cmdline.")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        stream.write(content)
    os.chmod(temporary, mode)
    module.atomic_move(temporary, path)


def _config_tokens(boot_loader: str, dropin: bool, text: str, where: str) -> list[str]:
    if boot_loader == SYSTEMD_BOOT:
        return text.split()
    if dropin:
        return dropin_tokens(text, where)
    return grub_default_tokens(text, where)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "params": {"type": "list", "elements": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "boot_loader": {"type": "str", "choices": ["auto", GRUB, SYSTEMD_BOOT], "default": "auto"},
            "grub_dropin": {"type": "str"},
            "root": {"type": "path", "default": "/"},
            "config_root": {"type": "path", "default": "/"},
        },
        supports_check_mode=True,
    )
    params = module.params["params"]
    state = module.params["state"]
    dropin_name = module.params["grub_dropin"]
    config_root = module.params["config_root"]

    bad = invalid_params(params)
    if bad or not params:
        module.fail_json(
            msg=f"params must be non-empty 'key' or 'key=value' tokens without spaces or quotes; invalid: {bad}"
        )
    if dropin_name is not None and (not dropin_name.endswith(".cfg") or "/" in dropin_name):
        module.fail_json(
            msg=f"grub_dropin={dropin_name!r} must be a plain file name ending in .cfg (update-grub reads only *.cfg)"
        )
    if state == "present" and any(p.startswith("pcie_acs_override") for p in params):
        module.warn(
            "pcie_acs_override makes the kernel treat devices as isolated when the hardware does not say "
            "so; a VM could then reach memory of devices left with the host. Use it only on a lab machine."
        )

    boot_loader = module.params["boot_loader"]
    if boot_loader == "auto":
        boot_loader = detect_boot_loader(module.params["root"], config_root).name
    use_dropin = boot_loader == GRUB and dropin_name is not None
    if boot_loader == SYSTEMD_BOOT:
        relative = KERNEL_CMDLINE_FILE
    elif use_dropin:
        relative = os.path.join(GRUB_DROPIN_DIR, dropin_name)
    else:
        relative = GRUB_DEFAULTS_FILE
    path = os.path.join(config_root, relative)
    shown_path = "/" + relative

    before = _read(path)
    if before is None and not use_dropin:
        what = "systemd-boot" if boot_loader == SYSTEMD_BOOT else "GRUB"
        module.fail_json(
            msg=f"{shown_path} does not exist, so the {what} kernel command line cannot be edited safely "
            f"(it holds root= and boot= on Proxmox hosts); create it first or set boot_loader"
        )
    before = before or ""
    try:
        if boot_loader == SYSTEMD_BOOT:
            after = edit_kernel_cmdline(before, params, state)
        elif use_dropin:
            after = render_dropin(apply_params(dropin_tokens(before, shown_path), params, state))
        else:
            after = edit_grub_defaults(before, params, state, shown_path)
        configured_before = _config_tokens(boot_loader, use_dropin, before, shown_path)
        configured_after = _config_tokens(boot_loader, use_dropin, after, shown_path)
    except CmdlineError as error:
        module.fail_json(msg=str(error))

    changed = after != before
    if changed and not module.check_mode:
        if use_dropin and not after:
            os.remove(path)
        else:
            _write(module, path, after)

    running = _read(os.path.join(module.params["root"], "proc", "cmdline")) or ""
    running_matches = cmdline_satisfies(running.split(), params, state)
    result = {
        "changed": changed,
        "boot_loader": boot_loader,
        "path": shown_path,
        "configured_before": configured_before,
        "configured_after": configured_after,
        "refresh_needed": changed,
        "refresh_command": list(REFRESH_COMMANDS[boot_loader]),
        "running_cmdline_matches": running_matches,
        "reboot_needed": not running_matches,
    }
    if changed and module._diff:
        result["diff"] = {
            "before": before,
            "after": after,
            "before_header": shown_path,
            "after_header": shown_path,
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
