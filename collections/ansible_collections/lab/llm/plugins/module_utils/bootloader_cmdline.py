# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Edit kernel parameters inside the boot loader's configuration text, keeping everything else.

Pure functions on strings: the module reads the file, calls these, and writes the result.
Kernel parameters are ``key`` or ``key=value`` tokens separated by spaces
(Documentation/admin-guide/kernel-parameters.rst); when a key is given twice the kernel
generally uses the last one, so "present" replaces an existing ``key=other`` in place.
Some keys are read once per occurrence and every occurrence counts (REPEATABLE_KEYS, or a key the
caller asks for more than once): those are only added, never replaced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

GRUB_VARIABLE = "GRUB_CMDLINE_LINUX_DEFAULT"
_VALID_PARAM = re.compile(r"^[A-Za-z0-9_.\-]+(=[^\s'\"`$\\;]+)?$")
DROPIN_SELF_REFERENCE = "${" + GRUB_VARIABLE + "}"
DROPIN_HEADER = (
    "# Managed by lab.llm.kernel_cmdline: kernel parameters appended to GRUB_CMDLINE_LINUX_DEFAULT.\n"
    "# update-grub reads /etc/default/grub.d/*.cfg after /etc/default/grub.\n"
)


# Keys whose every occurrence takes effect, so ``video=efifb:off video=vesafb:off`` means both:
# - console: one console per occurrence (Documentation/admin-guide/serial-console.rst, "multiple console=");
# - video: one mode/driver option per output or framebuffer driver (drivers/video/cmdline.c video_setup
#   keeps each, Documentation/fb/modedb.rst "video=<driver>:<options>"); GPU passthrough guides turn off
#   both efifb and vesafb this way;
# - initcall_blacklist: each adds initcalls to the list (init/main.c initcall_blacklist);
# - memmap, acpi_osi, hugepagesz/hugepages: each occurrence adds a region, an OSI string or a pool
#   (kernel-parameters.txt; arch/x86/kernel/e820.c, drivers/acpi/osi.c, mm/hugetlb.c).
REPEATABLE_KEYS = frozenset({"console", "video", "initcall_blacklist", "memmap", "acpi_osi", "hugepagesz", "hugepages"})


class CmdlineError(ValueError):
    """The configuration cannot be edited safely (unparsable value, invalid parameter)."""


def param_key(param: str) -> str:
    return param.split("=", 1)[0]


def invalid_params(params: list[str]) -> list[str]:
    """Parameters that are not a single shell-safe ``key`` or ``key=value`` token."""
    return [p for p in params if not _VALID_PARAM.match(p)]


def repeatable_keys(params: list[str]) -> set:
    """Keys each of whose occurrences counts: REPEATABLE_KEYS and any key ``params`` names twice."""
    keys = [param_key(p) for p in params]
    return set(REPEATABLE_KEYS) | {key for key in keys if keys.count(key) > 1}


def apply_params(tokens: list[str], params: list[str], state: str, repeatable: set | None = None) -> list[str]:
    """``tokens`` with ``params`` present (replacing ``key=other`` in place) or absent.

    Absent with ``key=value`` removes exactly that token; absent with a bare ``key`` removes the
    key with any value. A repeatable key (``repeatable``, default ``repeatable_keys(params)``) is
    appended, never replaced.
    """
    result = list(tokens)
    repeatable = repeatable_keys(params) if repeatable is None else repeatable
    for param in params:
        key = param_key(param)
        if state == "present":
            if param in result:
                continue
            if key in repeatable:
                result.append(param)
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


def cmdline_satisfies(tokens: list[str], params: list[str], state: str, repeatable: set | None = None) -> bool:
    """Whether a command line (e.g. the running /proc/cmdline) already has the wanted state.

    Present: the last token with each parameter's key is that parameter (the kernel keeps the last
    value of a key it reads twice), or, for a repeatable key, the parameter is one of the tokens.
    Absent: no token matches.
    """
    if state == "absent":
        return apply_params(tokens, params, state) == tokens
    repeatable = repeatable_keys(params) if repeatable is None else repeatable
    for param in params:
        if param_key(param) in repeatable:
            if param not in tokens:
                return False
            continue
        same_key = [token for token in tokens if param_key(token) == param_key(param)]
        if not same_key or same_key[-1] != param:
            return False
    return True


# -- GRUB: what update-grub really passes to the kernel ---------------------------------------------
#
# grub-mkconfig (update-grub) sources /etc/default/grub, then every /etc/default/grub.d/*.cfg in glob
# order, with /bin/sh; a later assignment replaces an earlier one unless it refers to the variable
# itself (X="$X more"). util/grub.d/10_linux.in then boots the default entry with
# "${GRUB_CMDLINE_LINUX} ${GRUB_CMDLINE_LINUX_DEFAULT}" (recovery entries get GRUB_CMDLINE_LINUX only).
# The functions below evaluate the simple assignments those files hold; any other shell construct that
# touches the two variables is refused rather than guessed.

GRUB_LINUX = "GRUB_CMDLINE_LINUX"
GRUB_CMDLINE_VARIABLES = (GRUB_LINUX, GRUB_VARIABLE)
_ANY_ASSIGNMENT = re.compile(r"^(?P<indent>\s*)(?P<export>export\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")
_MENTIONS = re.compile(r"\b(" + "|".join(GRUB_CMDLINE_VARIABLES) + r")\b")
_BARE_EXPORT = re.compile(r"^\s*export(\s+[A-Za-z_][A-Za-z0-9_]*)+\s*(#.*)?$")  # export NAME...: no value change
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SHELL_SPECIAL = set(";&|<>()`")


class _Unsupported(ValueError):
    """A shell construct this evaluator does not model."""


@dataclass
class GrubToken:
    """One blank-separated part of an assignment's value: a literal ``word``, a ``ref`` to a variable
    (``${NAME}``), or ``raw`` (a mix of both, kept as written)."""

    kind: str
    text: str


@dataclass
class GrubAssignment:
    """One ``NAME=value`` line of a file update-grub sources, and what it evaluated to."""

    path: str
    line: int
    name: str
    tokens: list[GrubToken]
    value: str
    indent: str = ""
    export: str = ""
    comment: str = ""

    @property
    def appends(self) -> bool:
        """Whether it keeps the earlier value (refers to its own variable)."""
        return any(self.name in _refs(token) for token in self.tokens if token.kind != "word")


@dataclass
class GrubDefaults:
    """The result of sourcing the files in order: variables and every assignment to the two we track."""

    variables: dict
    assignments: list[GrubAssignment] = field(default_factory=list)

    def tokens(self, name: str) -> list[str]:
        return (self.variables.get(name) or "").split()

    @property
    def kernel_tokens(self) -> list[str]:
        """The default boot entry's parameters, as 10_linux puts them together."""
        return self.tokens(GRUB_LINUX) + self.tokens(GRUB_VARIABLE)

    def last(self, name: str) -> GrubAssignment | None:
        found = [a for a in self.assignments if a.name == name]
        return found[-1] if found else None


def _refs(token: GrubToken) -> set:
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", token.text))


def _parse_value(raw: str) -> tuple[list, str]:
    """A shell word -> (segments [("lit", text) | ("var", name) | ("blank", " ")], trailing comment).

    Quotes, backslashes, ``$NAME`` and ``${NAME}`` as /bin/sh reads them in an assignment; command
    substitution, parameter operators, several commands on one line and unquoted blanks followed by
    more than a comment raise _Unsupported.
    """
    segments: list = []
    index = 0

    def expansion(at: int) -> tuple[str, int]:
        if raw.startswith("${", at):
            close = raw.find("}", at)
            name = raw[at + 2 : close] if close > 0 else ""
            if not _NAME.fullmatch(name):
                raise _Unsupported("parameter expansion %r" % raw[at : close + 1 if close > 0 else None])
            return name, close + 1
        match = _NAME.match(raw, at + 1)
        if not match:
            raise _Unsupported("'$' not followed by a variable name")
        return match.group(0), match.end()

    while index < len(raw):
        char = raw[index]
        if char in " \t":
            rest = raw[index:].strip()
            if rest and not rest.startswith("#"):
                raise _Unsupported("unquoted spaces in the value, then %r" % rest)
            return segments, (raw[index:].rstrip() if rest else "")
        if char == "'":
            close = raw.find("'", index + 1)
            if close < 0:
                raise _Unsupported("unterminated single quote")
            segments += _literal(raw[index + 1 : close])
            index = close + 1
        elif char == '"':
            index += 1
            while True:
                if index >= len(raw):
                    raise _Unsupported("unterminated double quote")
                char = raw[index]
                if char == '"':
                    index += 1
                    break
                if char == "\\" and index + 1 < len(raw) and raw[index + 1] in '$`"\\':
                    segments += _literal(raw[index + 1])
                    index += 2
                elif char == "$":
                    name, index = expansion(index)
                    segments.append(("var", name))
                elif char == "`":
                    raise _Unsupported("command substitution")
                else:
                    segments += _literal(char)
                    index += 1
        elif char == "\\":
            if index + 1 >= len(raw):
                raise _Unsupported("line continuation")
            segments += _literal(raw[index + 1])
            index += 2
        elif char == "$":
            name, index = expansion(index)
            segments.append(("var", name))
        elif char in _SHELL_SPECIAL:
            raise _Unsupported("shell operator %r" % char)
        else:
            segments += _literal(char)
            index += 1
    return segments, ""


def _literal(text: str) -> list:
    parts: list = []
    for piece in re.split(r"(\s+)", text):
        if piece:
            parts.append(("blank", " ") if piece.isspace() else ("lit", piece))
    return parts


def _tokens(segments: list) -> list[GrubToken]:
    """Segments -> blank-separated tokens; a reference glued to text becomes a ``raw`` token."""
    tokens: list[GrubToken] = []
    current: list = []
    for segment in [*segments, ("blank", " ")]:
        if segment[0] != "blank":
            current.append(segment)
            continue
        if not current:
            continue
        if all(segment[0] == "lit" for segment in current):
            tokens.append(GrubToken("word", "".join(segment[1] for segment in current)))
        else:
            text = "".join(_escape(text) if kind == "lit" else "${%s}" % text for kind, text in current)
            tokens.append(GrubToken("ref" if len(current) == 1 else "raw", text))
        current = []
    return tokens


def _escape(text: str) -> str:
    """Text as it must appear inside double quotes."""
    return re.sub(r'([\\"$`])', r"\\\1", text)


def _expand(segments: list, variables: dict) -> str:
    return "".join(variables.get(text) or "" if kind == "var" else text for kind, text in segments)


def evaluate_grub_files(files: list[tuple[str, str]]) -> GrubDefaults:
    """Source ``files`` ((shown path, text), in update-grub's order) as far as the kernel command line goes.

    Raises CmdlineError naming the file and line when a line that touches GRUB_CMDLINE_LINUX or
    GRUB_CMDLINE_LINUX_DEFAULT is not a simple assignment, or uses a variable that could not be evaluated.
    """
    result = GrubDefaults(variables={})
    unknown: set[str] = set()
    for path, text in files:
        for number, line in enumerate(text.splitlines()):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            match = _ANY_ASSIGNMENT.match(line)
            tracked = match is not None and match.group("name") in GRUB_CMDLINE_VARIABLES
            if not tracked and (not _MENTIONS.search(line) or _BARE_EXPORT.match(line)):
                if match:  # another variable: evaluate it if it is simple, it may be used below
                    try:
                        segments = _parse_value(match.group("value"))[0]
                        result.variables[match.group("name")] = _expand(segments, result.variables)
                        unknown.discard(match.group("name"))
                    except _Unsupported:
                        unknown.add(match.group("name"))
                continue
            where = "%s line %d" % (path, number + 1)
            if match is None or not tracked:
                raise CmdlineError(
                    "cannot tell what update-grub makes of %s: %r is not a simple assignment; "
                    'set the kernel command line with plain NAME="..." lines' % (where, stripped)
                )
            try:
                segments, comment = _parse_value(match.group("value"))
            except _Unsupported as error:
                raise CmdlineError(
                    "cannot parse %s in %s: %s (line %r)" % (match.group("name"), where, error, stripped)
                ) from None
            used = {text for kind, text in segments if kind == "var"} & unknown
            if used:
                raise CmdlineError(
                    "cannot evaluate %s in %s: it uses %s, which is not set by a plain assignment"
                    % (match.group("name"), where, ", ".join(sorted(used)))
                )
            name = match.group("name")
            value = " ".join(_expand(segments, result.variables).split())
            result.assignments.append(
                GrubAssignment(path, number, name, _tokens(segments), value,
                               match.group("indent"), match.group("export") or "", comment)
            )  # fmt: skip
            result.variables[name] = value
    return result


def render_assignment(assignment: GrubAssignment, words: list[str]) -> str:
    """The assignment's line with its literal words replaced by ``words`` (references kept in place)."""
    refs = [(i, token) for i, token in enumerate(assignment.tokens) if token.kind != "word"]
    texts = [_escape(word) for word in words]
    for position, token in refs:  # keep each reference where it was relative to the words
        texts.insert(min(position, len(texts)), token.text)
    return '%s%s%s="%s"%s' % (assignment.indent, assignment.export, assignment.name, " ".join(texts),
                              assignment.comment)  # fmt: skip


def literal_words(assignment: GrubAssignment) -> list[str]:
    return [token.text for token in assignment.tokens if token.kind == "word"]


def edit_assignment(
    text: str, assignment: GrubAssignment, params: list[str], state: str, repeatable: set | None = None
) -> str:
    """``text`` (the file of ``assignment``) with ``params`` applied to that assignment's literal words."""
    old_words = literal_words(assignment)
    new_words = apply_params(old_words, params, state, repeatable)
    if new_words == old_words:
        return text
    lines = text.splitlines(keepends=True)
    ending = "\n" if lines[assignment.line].endswith("\n") else ""
    lines[assignment.line] = render_assignment(assignment, new_words) + ending
    return "".join(lines)


def append_assignment(text: str, params: list[str]) -> str:
    """``text`` with a GRUB_CMDLINE_LINUX_DEFAULT assignment holding ``params`` appended."""
    separator = "" if not text or text.endswith("\n") else "\n"
    return '%s%s%s="%s"\n' % (text, separator, GRUB_VARIABLE, " ".join(params))


def grub_default_tokens(text: str, where: str = "/etc/default/grub") -> list[str]:
    """The literal parameters of the last GRUB_CMDLINE_LINUX_DEFAULT assignment in one file."""
    last = evaluate_grub_files([(where, text)]).last(GRUB_VARIABLE)
    return literal_words(last) if last else []


def edit_grub_defaults(text: str, params: list[str], state: str, where: str = "/etc/default/grub") -> str:
    """One file with its last GRUB_CMDLINE_LINUX_DEFAULT assignment edited (or one appended)."""
    last = evaluate_grub_files([(where, text)]).last(GRUB_VARIABLE)
    if last is None:
        tokens = apply_params([], params, state)
        return append_assignment(text, tokens) if tokens else text
    return edit_assignment(text, last, params, state)


def dropin_tokens(text: str, where: str) -> list[str]:
    """The parameters our GRUB drop-in appends (its own ``${GRUB_CMDLINE_LINUX_DEFAULT}`` left out)."""
    return grub_default_tokens(text, where)


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
