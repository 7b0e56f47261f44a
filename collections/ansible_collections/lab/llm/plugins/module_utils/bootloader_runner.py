# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The flow of lab.llm.kernel_cmdline: check input, choose the file that decides, edit, prove, write.

With GRUB the file to edit is the one whose assignment wins when update-grub sources
/etc/default/grub and then /etc/default/grub.d/*.cfg (or the module's own drop-in when one is
named). Before anything is written the whole chain is evaluated again with the edit in place; when
the kernel would still not get the wanted parameters (a later drop-in overrides them, or they come
from GRUB_CMDLINE_LINUX) the run fails naming the file and line, and nothing changes.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ansible_collections.lab.llm.plugins.module_utils.bootloader import (
    GRUB_DEFAULTS_FILE,
    GRUB_DROPIN_DIR,
    KERNEL_CMDLINE_FILE,
    REFRESH_COMMANDS,
    SYSTEMD_BOOT,
    detect_boot_loader,
)
from ansible_collections.lab.llm.plugins.module_utils.bootloader_cmdline import (
    GRUB_VARIABLE,
    CmdlineError,
    GrubDefaults,
    append_assignment,
    apply_params,
    cmdline_satisfies,
    dropin_tokens,
    edit_assignment,
    edit_kernel_cmdline,
    evaluate_grub_files,
    invalid_params,
    param_key,
    render_dropin,
    repeatable_keys,
)
from ansible_collections.lab.llm.plugins.module_utils.files import read_text, write_atomically


class KernelCmdlineRunner:
    """Brings the boot loader's kernel command line to the wanted state; ``run()`` returns the result.

    ``atomic_move(src, dest)`` is the module's (AnsibleModule.atomic_move). Every error is a
    CmdlineError raised before the first write.
    """

    def __init__(self, params: dict, check_mode: bool, diff: bool, atomic_move: Callable[[str, str], None]):
        self.params = params
        self.check_mode = check_mode
        self.diff = diff
        self.atomic_move = atomic_move
        self.config_root = params["config_root"]
        self.warnings: list[str] = []

    # -- checks -------------------------------------------------------------------------------------
    def check_input(self) -> None:
        params, dropin = self.params["params"], self.params["grub_dropin"]
        bad = invalid_params(params)
        if bad or not params:
            raise CmdlineError(
                "params must be non-empty 'key' or 'key=value' tokens without spaces or quotes; invalid: %s" % bad
            )
        if dropin is not None and (not dropin.endswith(".cfg") or "/" in dropin or dropin.startswith(".")):
            raise CmdlineError(
                "grub_dropin=%r must be a plain file name ending in .cfg (update-grub reads only *.cfg)" % dropin
            )
        if self.params["state"] == "present" and any(p.startswith("pcie_acs_override") for p in params):
            self.warnings.append(
                "pcie_acs_override makes the kernel treat devices as isolated when the hardware does not say "
                "so; a VM could then reach memory of devices left with the host. Use it only on a lab machine."
            )

    # -- the flow -----------------------------------------------------------------------------------
    def run(self) -> dict:
        self.check_input()
        boot_loader = self.params["boot_loader"]
        if boot_loader == "auto":
            boot_loader = detect_boot_loader(self.params["root"], self.config_root).name
        if boot_loader == SYSTEMD_BOOT:
            relative, before, after, configured_before, configured_after = self._systemd_boot()
        else:
            relative, before, after, configured_before, configured_after = self._grub()
        path = os.path.join(self.config_root, relative)
        changed = after != before
        if changed and not self.check_mode:
            if after or self.params["grub_dropin"] is None or boot_loader == SYSTEMD_BOOT:
                self._write(path, after)
            else:
                os.remove(path)  # our drop-in with nothing left to append
        params, state = self.params["params"], self.params["state"]
        running = read_text(os.path.join(self.params["root"], "proc", "cmdline")) or ""
        running_matches = cmdline_satisfies(running.split(), params, state)
        shown = "/" + relative
        result = {
            "changed": changed,
            "boot_loader": boot_loader,
            "path": shown,
            "configured_before": configured_before,
            "configured_after": configured_after,
            "refresh_needed": changed,
            "refresh_command": list(REFRESH_COMMANDS[boot_loader]),
            "running_cmdline_matches": running_matches,
            "reboot_needed": not running_matches,
        }
        if changed and self.diff:
            result["diff"] = {"before": before, "after": after, "before_header": shown, "after_header": shown}
        return result

    def _systemd_boot(self) -> tuple:
        before = read_text(os.path.join(self.config_root, KERNEL_CMDLINE_FILE))
        if before is None:
            raise CmdlineError(
                "/%s does not exist, so the systemd-boot kernel command line cannot be edited safely "
                "(it holds root= and boot= on Proxmox hosts); create it first or set boot_loader" % KERNEL_CMDLINE_FILE
            )
        after = edit_kernel_cmdline(before, self.params["params"], self.params["state"])
        return KERNEL_CMDLINE_FILE, before, after, before.split(), after.split()

    # -- GRUB ---------------------------------------------------------------------------------------
    def _grub_chain(self) -> list[tuple[str, str, str]]:
        """(relative path, shown path, text) of every file update-grub sources, in its order.

        grub-mkconfig: ``. /etc/default/grub``, then ``for x in /etc/default/grub.d/*.cfg`` (sh glob:
        no dot files, sorted byte-wise by dash).
        """
        chain = []
        defaults = read_text(os.path.join(self.config_root, GRUB_DEFAULTS_FILE))
        if defaults is not None:
            chain.append((GRUB_DEFAULTS_FILE, "/" + GRUB_DEFAULTS_FILE, defaults))
        directory = os.path.join(self.config_root, GRUB_DROPIN_DIR)
        names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
        for name in names:
            relative = os.path.join(GRUB_DROPIN_DIR, name)
            text = read_text(os.path.join(self.config_root, relative))
            if name.endswith(".cfg") and not name.startswith(".") and text is not None:
                chain.append((relative, "/" + relative, text))
        return chain

    def _grub(self) -> tuple:
        params, state, dropin = self.params["params"], self.params["state"], self.params["grub_dropin"]
        chain = self._grub_chain()
        if not any(item[0] == GRUB_DEFAULTS_FILE for item in chain) and dropin is None:
            raise CmdlineError(
                "/%s does not exist, so the GRUB kernel command line cannot be edited safely "
                "(it holds root= and boot= on Proxmox hosts); create it first or set boot_loader" % GRUB_DEFAULTS_FILE
            )
        evaluated = evaluate_grub_files([(shown, text) for relative, shown, text in chain])
        current = {relative: text for relative, shown, text in chain}
        repeatable = repeatable_keys(params)
        if state == "present":  # add only what the kernel does not get yet (perhaps from GRUB_CMDLINE_LINUX)
            params = [p for p in params if not cmdline_satisfies(evaluated.kernel_tokens, [p], state, repeatable)]
        if dropin is not None:
            relative = os.path.join(GRUB_DROPIN_DIR, dropin)
            before = current.get(relative, "")
            after = render_dropin(apply_params(dropin_tokens(before, "/" + relative), params, state, repeatable))
        else:
            last = evaluated.last(GRUB_VARIABLE)
            relative = GRUB_DEFAULTS_FILE if last is None else last.path.lstrip("/")
            before = current[relative]
            if last is None:
                tokens = apply_params([], params, state, repeatable)
                after = append_assignment(before, tokens) if tokens else before
            else:
                after = edit_assignment(before, last, params, state, repeatable)
        planned = dict(current)
        planned[relative] = after
        order = sorted(planned, key=lambda name: (name != GRUB_DEFAULTS_FILE, name))
        result = evaluate_grub_files([("/" + name, planned[name]) for name in order if planned[name] or
                                      name == GRUB_DEFAULTS_FILE])  # fmt: skip
        if not cmdline_satisfies(result.kernel_tokens, self.params["params"], state):
            raise CmdlineError(self._not_winning(result, "/" + relative))
        return relative, before, after, evaluated.kernel_tokens, result.kernel_tokens

    def _not_winning(self, result: GrubDefaults, target: str) -> str:
        params, state = self.params["params"], self.params["state"]
        keys = {param_key(p) for p in params}
        reasons = []
        seen_target = False
        for assignment in result.assignments:
            where = "%s line %d" % (assignment.path, assignment.line + 1)
            if assignment.path == target and assignment.name == GRUB_VARIABLE:
                seen_target = True
                continue
            holds = [t.text for t in assignment.tokens if t.kind == "word" and param_key(t.text) in keys]
            if seen_target and assignment.name == GRUB_VARIABLE and not assignment.appends:
                reasons.append("%s sets %s again without keeping the earlier value" % (where, assignment.name))
            elif holds:
                reasons.append("%s puts %s into %s" % (where, " ".join(holds), assignment.name))
        wanted = " ".join(params) if state == "present" else "none of " + " ".join(params)
        if state == "absent":
            advice = "this module edits only the GRUB_CMDLINE_LINUX_DEFAULT assignment that wins; remove them there"
        elif self.params["grub_dropin"] is not None:
            advice = (
                "name grub_dropin so that it sorts after that file, or leave grub_dropin unset to edit the "
                "assignment that wins"
            )
        else:
            advice = "put the parameters into the assignment that wins by hand"
        return (
            "update-grub would boot the kernel with %r (GRUB_CMDLINE_LINUX, then GRUB_CMDLINE_LINUX_DEFAULT, "
            "after sourcing /etc/default/grub and /etc/default/grub.d/*.cfg), not with %s, even after editing "
            "%s: %s. Nothing was changed; %s."
            % (" ".join(result.kernel_tokens), wanted, target, "; ".join(reasons) or "see those files", advice)
        )

    def _write(self, path: str, content: str) -> None:
        mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o644
        write_atomically(path, content, mode, self.atomic_move)
