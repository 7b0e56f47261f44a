# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Proxmox property strings (``virtio,bridge=vmbr0,tag=20``): parse, print, compare.

A property string is a comma-separated list of ``key=value``; one key of each format may be given
bare (its ``default_key``, e.g. ``host`` for ``hostpci[n]``, ``model`` for ``net[n]``).
"""

from __future__ import annotations

try:
    from urllib.parse import quote, unquote
except ImportError:  # pragma: no cover - Python 2 is not supported by this collection
    quote = unquote = None  # type: ignore[assignment]


def parse(text: str, default_key: str | None = None) -> dict:
    """``'0000:01:00,pcie=1'`` -> ``{'host': '0000:01:00', 'pcie': '1'}`` (values stay strings)."""
    result = {}
    for part in str(text).split(","):
        if not part:
            continue
        if "=" in part:
            key, value = part.split("=", 1)
            result[key] = value
        elif default_key is not None:
            result[default_key] = part
        else:
            result[part] = "1"
    return result


def render(values: dict, default_key: str | None = None) -> str:
    """Inverse of parse: the default key first and bare, the others as key=value in the given order."""
    parts = []
    if default_key is not None and default_key in values:
        parts.append(str(values[default_key]))
    parts.extend("%s=%s" % (key, _text(value)) for key, value in values.items() if key != default_key)
    return ",".join(parts)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def normalize_net(values: dict) -> dict:
    """``virtio=BC:24:..`` (model given as its MAC alias) -> ``model=virtio, macaddr=BC:24:..``."""
    normalized = {}
    for key, value in values.items():
        if key in NET_MODELS and key != "model":
            normalized["model"] = key
            normalized["macaddr"] = value
        else:
            normalized[key] = value
    return normalized


# The net[n] model enum of the API schema (net[n].format.model.enum).
NET_MODELS = (
    "e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e", "i82551", "i82557b",
    "i82559er", "ne2k_isa", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3",
)  # fmt: skip


def encode_sshkeys(keys: list) -> str:
    """The API wants ``sshkeys`` URL-encoded (format ``urlencoded``), spaces as %20, not '+'."""
    return quote("\n".join(keys) + "\n", safe="")


def decode_sshkeys(value: str) -> list:
    return [line for line in unquote(value or "").splitlines() if line.strip()]


def split_tags(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Tags come back as ``a;b``; the schema (pve-tag-list) also accepts ',' and ' ' as separators."""
    if not value:
        return []
    if isinstance(value, (list, tuple)):
        return sorted({str(tag) for tag in value})
    for separator in (",", " "):
        value = value.replace(separator, ";")
    return sorted({tag for tag in value.split(";") if tag})
