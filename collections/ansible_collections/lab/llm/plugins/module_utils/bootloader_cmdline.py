# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Edit kernel parameters inside the boot loader's configuration text, keeping everything else.

Pure functions on strings: the module reads the file, calls these, and writes the result.
Kernel parameters are ``key`` or ``key=value`` tokens separated by spaces
(Documentation/admin-guide/kernel-parameters.rst); when a key is given twice the kernel
generally uses the last one, so "present" replaces an existing ``key=other`` in place.
"""

from __future__ import annotations

import re
import shlex

GRUB_VARIABLE = "GRUB_CMDLINE_LINUX_DEFAULT"
_GRUB_ASSIGNMENT = re.compile(r"^(?P<indent>\s*)(?P<export>export\s+)?" + GRUB_VARIABLE + r"=(?P<value>.*)$")
_QUOTED_WITH_COMMENT = re.compile(r"""^(?:"[^"]*"|'[^']*')(?P<comment>\s+#.*)?$""")
_VALID_PARAM = re.compile(r"^[A-Za-z0-9_.\-]+(=[^\s'\"`$\\;]+)?$")
DROPIN_SELF_REFERENCE = "${" + GRUB_VARIABLE + "}"
DROPIN_HEADER = (
    "# Managed by lab.llm.kernel_cmdline: kernel parameters appended to GRUB_CMDLINE_LINUX_DEFAULT.\n"
    "# update-grub reads /etc/default/grub.d/*.cfg after /etc/default/grub.\n"
)


class CmdlineError(ValueError):
    """The configuration cannot be edited safely (unparsable value, invalid parameter)."""


def param_key(param: str) -> str:
    return param.split("=", 1)[0]


def invalid_params(params: list[str]) -> list[str]:
    """Parameters that are not a single shell-safe ``key`` or ``key=value`` token."""
    return [p for p in params if not _VALID_PARAM.match(p)]


def apply_params(tokens: list[str], params: list[str], state: str) -> list[str]:
    """``tokens`` with ``params`` present (replacing ``key=other`` in place) or absent.

    Absent with ``key=value`` removes exactly that token; absent with a bare ``key`` removes the
    key with any value.
    """
    result = list(tokens)
    for param in params:
        key = param_key(param)
        if state == "present":
            if param in result:
                continue
            same_key = [i for i, token in enumerate(result) if param_key(token) == key]
            if same_key:
                result[same_key[0]] = param
                result = [t for i, t in enumerate(result) if i not in same_key[1:]]
            else:
                result.append(param)
        elif "=" in param:
            result = [t for t in result if t != param]
        else:
            result = [t for t in result if param_key(t) != key]
    return result


def cmdline_satisfies(tokens: list[str], params: list[str], state: str) -> bool:
    """Whether a command line (e.g. the running /proc/cmdline) already has the wanted state."""
    return apply_params(tokens, params, state) == tokens if state == "absent" else all(p in tokens for p in params)


def _parse_shell_value(raw: str, where: str) -> str:
    try:
        words = shlex.split(raw, comments=True)
    except ValueError as error:
        raise CmdlineError(f"cannot parse {GRUB_VARIABLE} in {where}: {error} (value {raw!r})") from error
    if len(words) > 1:
        raise CmdlineError(f"cannot parse {GRUB_VARIABLE} in {where}: unquoted spaces in {raw!r}")
    return words[0] if words else ""


def _format_assignment(indent: str, export: str, tokens: list[str]) -> str:
    return f'{indent}{export}{GRUB_VARIABLE}="{" ".join(tokens)}"'


def grub_default_tokens(text: str, where: str = "/etc/default/grub") -> list[str]:
    """The parameters of the last GRUB_CMDLINE_LINUX_DEFAULT assignment (the one update-grub uses)."""
    tokens: list[str] = []
    for line in text.splitlines():
        match = _GRUB_ASSIGNMENT.match(line)
        if match:
            tokens = _parse_shell_value(match.group("value"), where).split()
    return tokens


def edit_grub_defaults(text: str, params: list[str], state: str, where: str = "/etc/default/grub") -> str:
    """/etc/default/grub with the last GRUB_CMDLINE_LINUX_DEFAULT assignment edited (or one appended)."""
    lines = text.splitlines(keepends=True)
    matches = [(i, _GRUB_ASSIGNMENT.match(line.rstrip("\n"))) for i, line in enumerate(lines)]
    matches = [(i, m) for i, m in matches if m]
    if not matches:
        tokens = apply_params([], params, state)
        if not tokens:
            return text
        separator = "" if not text or text.endswith("\n") else "\n"
        return f"{text}{separator}{_format_assignment('', '', tokens)}\n"
    index, match = matches[-1]
    old_tokens = _parse_shell_value(match.group("value"), where).split()
    new_tokens = apply_params(old_tokens, params, state)
    if new_tokens == old_tokens:
        return text
    ending = "\n" if lines[index].endswith("\n") else ""
    quoted = _QUOTED_WITH_COMMENT.match(match.group("value").strip())
    comment = (quoted.group("comment") or "") if quoted else ""
    lines[index] = _format_assignment(match.group("indent"), match.group("export") or "", new_tokens) + comment + ending
    return "".join(lines)


def dropin_tokens(text: str, where: str) -> list[str]:
    """The parameters our GRUB drop-in appends (its own ``${GRUB_CMDLINE_LINUX_DEFAULT}`` left out)."""
    return [t for t in grub_default_tokens(text, where) if t != DROPIN_SELF_REFERENCE]


def render_dropin(tokens: list[str]) -> str:
    """A drop-in that appends ``tokens``; empty when nothing is left to append."""
    if not tokens:
        return ""
    return f'{DROPIN_HEADER}{GRUB_VARIABLE}="{DROPIN_SELF_REFERENCE} {" ".join(tokens)}"\n'


def edit_kernel_cmdline(text: str, params: list[str], state: str) -> str:
    """/etc/kernel/cmdline (one line, as proxmox-boot-tool reads it) with ``params`` applied."""
    old_tokens = text.split()
    new_tokens = apply_params(old_tokens, params, state)
    if new_tokens == old_tokens:
        return text
    return " ".join(new_tokens) + "\n"
