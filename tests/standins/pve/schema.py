"""Parameter checking of the Proxmox VE API, driven by the API viewer's schema (pve-api-subset.json).

What Proxmox does (PVE::JSONSchema in pve-common, as the API viewer documents it) and this file encodes:
every endpoint declares its parameters with ``type``, ``format``, ``enum``, ``minimum``/``maximum``,
``maxLength``, ``pattern`` and ``optional``; ``additionalProperties: 0`` rejects unknown parameters;
indexed options are declared once as ``hostpci[n]``; property-string formats are either spelled out
(a dict of keys, with ``default_key``, ``alias`` and ``keyAlias``) or named (``pve-qm-hostpci``), in
which case only ``typetext`` describes them. A violation is HTTP 400 "Parameter verification failed."
with an ``errors`` object keyed by parameter.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

# Highest index of indexed options (qemu-server: MAX_HOSTPCI_DEVICES 16, MAX_NETS 32, scsi 0..30, ...).
INDEX_LIMITS = {"hostpci": 15, "net": 31, "ipconfig": 31, "scsi": 30, "virtio": 15, "sata": 5, "ide": 3}
DEFAULT_INDEX_LIMIT = 255

CONFIGID = re.compile(r"^[a-z][a-z0-9_-]+$", re.IGNORECASE)
NODE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?$")
DNS_NAME = re.compile(r"^(([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)\.)*([A-Za-z0-9]([A-Za-z0-9\-]*[A-Za-z0-9])?)$")
STORAGE_ID = re.compile(r"^[a-z][a-z0-9\-_.]*[a-z0-9]$", re.IGNORECASE)
URLENCODED = re.compile(r"^[-%a-zA-Z0-9_.!~*'()]*$")
TAG = re.compile(r"^[a-z0-9_][a-z0-9_\-+.]*$", re.IGNORECASE)
HOSTPCI_ID = re.compile(r"^(?:[a-f0-9]{4,}:)?[a-f0-9]{2}:[a-f0-9]{2}(?:\.[a-f0-9])?$")
HEX_ID = re.compile(r"^(?:0x)?[0-9a-fA-F]{4}$")
DISK_SIZE = re.compile(r"^\d+(?:\.\d+)?[KMGT]?$")
VOLUME = re.compile(r"^(?:[a-z][a-z0-9\-_.]*[a-z0-9]:.+|/.+|none|cdrom)$", re.IGNORECASE)
TYPETEXT_KEY = re.compile(r"\[,?(\[)?([\w-]+)=\]?<([^>]*)>\]")


class ParameterError(Exception):
    """One parameter is wrong; the message is what Proxmox puts into ``errors[param]``."""


def _check_regex(regex: re.Pattern, what: str) -> Callable[[str], None]:
    def check(value: str) -> None:
        if not regex.match(value):
            raise ParameterError(f"value does not look like a valid {what}")

    return check


def _check_list(item_check: Callable[[str], None], separators: str = r"[,; ]") -> Callable[[str], None]:
    def check(value: str) -> None:
        for item in re.split(separators, value):
            if item:
                item_check(item)

    return check


def _check_ip(value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ParameterError("value does not look like a valid IP address") from None


def _check_cidr(version: int, specials: tuple = ()) -> Callable[[str], None]:
    def check(value: str) -> None:
        if value in specials:
            return
        try:
            network = ipaddress.ip_interface(value)
        except ValueError:
            raise ParameterError(f"invalid IPv{version} address/CIDR: {value}") from None
        if network.version != version or "/" not in value:
            raise ParameterError(f"invalid IPv{version} address/CIDR: {value}")

    return check


def _check_hostpci_ids(value: str) -> None:
    for item in value.split(";"):
        if not HOSTPCI_ID.match(item):
            raise ParameterError(f"value does not look like a valid PCI id: {item}")


def _check_urlencoded(value: str) -> None:
    if not URLENCODED.match(value):
        raise ParameterError(f"invalid urlencoded string: {value}")
    unquote(value)


def _check_vmid_list(value: str) -> None:
    for item in re.split(r"[,; ]", value):
        if item and not item.isdigit():
            raise ParameterError("value does not look like a valid VM ID")


# Named string formats the endpoints we call use (PVE::JSONSchema register_format).
NAMED_FORMATS: dict[str, Callable[[str], None]] = {
    "pve-node": _check_regex(NODE, "node name"),
    "pve-configid": _check_regex(CONFIGID, "configuration ID"),
    "pve-configid-list": _check_list(_check_regex(CONFIGID, "configuration ID")),
    "dns-name": _check_regex(DNS_NAME, "DNS name"),
    "pve-storage-id": _check_regex(STORAGE_ID, "storage ID"),
    "urlencoded": _check_urlencoded,
    "pve-tag-list": _check_list(_check_regex(TAG, "tag")),
    "address-list": _check_list(_check_ip),
    "pve-vmid-list": _check_vmid_list,
    "disk-size": _check_regex(DISK_SIZE, "disk size"),
    "pve-volume-id-or-qm-path": _check_regex(VOLUME, "volume"),
}

# Value kinds in ``typetext`` of named property-string formats (e.g. pve-qm-hostpci).
TYPETEXT_VALUES: dict[str, Callable[[str], None]] = {
    "HOSTPCIID[;HOSTPCIID2...]": _check_hostpci_ids,
    "hex id": _check_regex(HEX_ID, "hex id"),
    "mapping-id": _check_regex(CONFIGID, "mapping ID"),
    "GatewayIPv4": lambda value: _check_gateway(value, 4),
    "GatewayIPv6": lambda value: _check_gateway(value, 6),
    "IPv4Format/CIDR": _check_cidr(4, ("dhcp",)),
    "IPv6Format/CIDR": _check_cidr(6, ("dhcp", "auto")),
    "integer": lambda value: _check_int(value),
}


def _check_gateway(value: str, version: int) -> None:
    try:
        if ipaddress.ip_address(value).version != version:
            raise ValueError
    except ValueError:
        raise ParameterError(f"invalid IPv{version} gateway: {value}") from None


def _check_int(value: str) -> int:
    if not re.match(r"^[+-]?\d+$", value):
        raise ParameterError(f"type check ('integer') failed - got '{value}'")
    return int(value)


def _typed(schema: dict, value: str):
    """Check a scalar against ``type``/``enum``/limits/``pattern``/``format``; return it typed."""
    kind = schema.get("type", "string")
    if kind == "boolean":
        if re.match(r"^(1|true|yes|on)$", value, re.IGNORECASE):
            return 1
        if re.match(r"^(0|false|no|off)$", value, re.IGNORECASE):
            return 0
        raise ParameterError(f"type check ('boolean') failed - got '{value}'")
    if kind == "integer":
        number = _check_int(value)
    elif kind == "number":
        if not re.match(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$", value):
            raise ParameterError(f"type check ('number') failed - got '{value}'")
        number = float(value)
    else:
        number = None
    if number is not None:
        if "minimum" in schema and number < schema["minimum"]:
            raise ParameterError("value must have a minimum value of {}".format(schema["minimum"]))
        if "maximum" in schema and number > schema["maximum"]:
            raise ParameterError("value must have a maximum value of {}".format(schema["maximum"]))
        return number
    if "enum" in schema and value not in schema["enum"]:
        raise ParameterError(
            "value '{}' does not have a value in the enumeration '{}'".format(value, ", ".join(schema["enum"]))
        )
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise ParameterError("value may only be {} characters long".format(schema["maxLength"]))
    if "pattern" in schema and not re.fullmatch(perl_regex(schema["pattern"]), value):
        raise ParameterError("value does not match the regex pattern")
    fmt = schema.get("format")
    if isinstance(fmt, dict):
        parse_property_string(fmt, value)
    elif isinstance(fmt, str):
        if fmt in NAMED_FORMATS:
            NAMED_FORMATS[fmt](value)
        elif "typetext" in schema and "=" in schema["typetext"]:
            parse_typetext_string(fmt, schema["typetext"], value)
    return value


def perl_regex(pattern: str) -> str:
    """Perl's ``(?^:...)`` (default flags group) is Python's ``(?:...)``; anchors stay as they are."""
    return pattern.replace("(?^:", "(?:")


def parse_property_string(fmt: dict, text: str) -> dict:
    """``virtio=BC:..,bridge=vmbr0`` against a dict format: keys, aliases, keyAlias, required keys."""
    default_key = next((key for key, spec in fmt.items() if spec.get("default_key")), None)
    values: dict = {}
    for part in text.split(","):
        if not part:
            continue
        if "=" in part:
            key, value = part.split("=", 1)
        elif default_key is not None and default_key not in values:
            key, value = default_key, part
        else:
            raise ParameterError("value without key, but schema does not define a default key")
        spec = fmt.get(key)
        if spec is None:
            raise ParameterError(f"invalid format - invalid key in comma-separated list property: {key}")
        if "keyAlias" in spec:  # net: 'virtio=MAC' is model=virtio, macaddr=MAC
            values[spec["keyAlias"]] = key
            key, spec = spec["alias"], fmt[spec["alias"]]
        elif "alias" in spec:
            key, spec = spec["alias"], fmt[spec["alias"]]
        if key in values:
            raise ParameterError(f"invalid format - duplicate key in comma-separated list property: {key}")
        try:
            values[key] = _typed(spec, value)
        except ParameterError as exc:
            raise ParameterError(f"invalid format - {key}: {exc}") from None
    for key, spec in fmt.items():
        if "alias" in spec or spec.get("optional") or key in values:
            continue
        raise ParameterError(f"invalid format - {key}: property is missing and it is not optional")
    return values


def parse_typetext_string(fmt_name: str, typetext: str, text: str) -> dict:
    """Named property-string formats are only described by ``typetext`` in the API viewer: use it."""
    keys = {}
    default_key = None
    for default, key, kind in TYPETEXT_KEY.findall(typetext):
        keys[key] = kind
        if default:
            default_key = key
    values: dict = {}
    for part in text.split(","):
        if not part:
            continue
        if "=" in part:
            key, value = part.split("=", 1)
        elif default_key is not None and default_key not in values:
            key, value = default_key, part
        else:
            raise ParameterError("invalid format - value without key, but schema does not define a default key")
        if key not in keys:
            raise ParameterError(f"invalid format - invalid key in comma-separated list property: {key}")
        if key in values:
            raise ParameterError(f"invalid format - duplicate key in comma-separated list property: {key}")
        _check_typetext_value(key, keys[key], value)
        values[key] = value
    if fmt_name == "pve-qm-hostpci" and ("host" in values) == ("mapping" in values):
        # qemu-server PCI.pm: a hostpci entry names either a raw device or a cluster mapping.
        raise ParameterError("either 'host' or 'mapping' must be set.")
    return values


def _check_typetext_value(key: str, kind: str, value: str) -> None:
    alternatives = kind.split("|")
    if len(alternatives) > 1:
        for alternative in alternatives:
            low_high = re.match(r"^(\d+)-(\d+)$", alternative)
            if value == alternative or (
                low_high and value.isdigit() and int(low_high.group(1)) <= int(value) <= int(low_high.group(2))
            ):
                return
        raise ParameterError(f"invalid format - {key}: value '{value}' is not one of {kind}")
    check = TYPETEXT_VALUES.get(kind)
    if check is not None:
        try:
            check(value)
        except ParameterError as exc:
            raise ParameterError(f"invalid format - {key}: {exc}") from None


@dataclass
class Endpoint:
    """One method of one path of the API schema."""

    path: str
    method: str
    info: dict

    @property
    def properties(self) -> dict:
        return self.info.get("parameters", {}).get("properties", {})

    def property_schema(self, name: str) -> dict | None:
        if name in self.properties:
            return self.properties[name]
        match = re.match(r"^([a-z]+)(\d+)$", name)
        if match:
            indexed = self.properties.get(match.group(1) + "[n]")
            if indexed is not None and int(match.group(2)) <= INDEX_LIMITS.get(match.group(1), DEFAULT_INDEX_LIMIT):
                return indexed
        return None

    def validate(self, raw: dict[str, list[str]]) -> dict:
        """Form/query values (lists of strings) -> typed parameters; raise ValidationFailed with errors."""
        errors: dict[str, str] = {}
        typed: dict = {}
        allow_extra = bool(self.info.get("parameters", {}).get("additionalProperties"))
        for name, values in raw.items():
            schema = self.property_schema(name)
            if schema is None:
                if not allow_extra:
                    errors[name] = (
                        "property is not defined in schema and the schema does not allow additional properties"
                    )
                continue
            try:
                if schema.get("type") == "array":
                    item_schema = schema.get("items", {})
                    typed[name] = [_typed(item_schema, value) for value in values]
                else:
                    if len(values) > 1:
                        raise ParameterError("duplicate parameter (not an array)")
                    typed[name] = _typed(schema, values[0])
            except ParameterError as exc:
                errors[name] = str(exc)
        for name, schema in self.properties.items():
            if "[n]" in name or schema.get("optional") or name in raw:
                continue
            errors[name] = "property is missing and it is not optional"
        if errors:
            raise ValidationFailed(errors)
        return typed


def answer_problems(schema: dict, data, where: str = "data") -> list[str]:
    """Where an answer of the stand-in does not have the shape the schema's ``returns`` declares.

    Structure and required keys are strict; scalar types are loose the way Proxmox's are (its Perl
    JSON encoder sends e.g. /cluster/nextid's integer as a string)."""
    kind = schema.get("type")
    if kind == "null":
        return [] if data is None else [f"{where}: expected null, got {type(data).__name__}"]
    if data is None:
        return [] if schema.get("optional") else [f"{where}: null where {kind} is required"]
    if kind == "array":
        if not isinstance(data, list):
            return [f"{where}: expected an array"]
        return [
            problem
            for index, item in enumerate(data)
            for problem in answer_problems(schema.get("items", {}), item, f"{where}[{index}]")
        ]
    if kind == "object":
        if not isinstance(data, dict):
            return [f"{where}: expected an object"]
        problems = []
        for name, prop in schema.get("properties", {}).items():
            if name in data:
                problems += answer_problems(prop, data[name], f"{where}.{name}")
            elif not prop.get("optional"):
                problems.append(f"{where}.{name}: missing")
        return problems
    text = str(data)
    loose = {
        "integer": isinstance(data, int) or re.fullmatch(r"-?\d+", text) is not None,
        "number": isinstance(data, (int, float)) or re.fullmatch(r"-?\d+(\.\d+)?", text) is not None,
        "boolean": data in (0, 1, True, False),
        "string": isinstance(data, (str, int, float)),
    }
    if not loose.get(kind, True):
        return [f"{where}: {data!r} is not {kind}"]
    if "enum" in schema and text not in schema["enum"]:
        return [f"{where}: {data!r} not in {schema['enum']}"]
    return []


class ValidationFailed(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("Parameter verification failed.")
        self.errors = errors


class ApiSchema:
    """The paths of the subset with their methods; matches a request path to its endpoint."""

    def __init__(self, paths: dict) -> None:
        self._paths = paths

    @classmethod
    def load(cls, subset_file: Path) -> ApiSchema:
        return cls(json.loads(subset_file.read_text())["paths"])

    def match(self, method: str, path: str) -> tuple[Endpoint, dict] | None:
        for template, methods in self._paths.items():
            found = _match(template, path)
            if found is not None and method in methods:
                return Endpoint(template, method, methods[method]), found
        return None

    def paths(self) -> list[str]:
        return list(self._paths)


def _match(template: str, path: str) -> dict | None:
    """``/nodes/{node}/qemu/{vmid}`` against ``/nodes/pve1/qemu/100`` -> {'node': 'pve1', 'vmid': '100'}."""
    want = template.strip("/").split("/")
    have = path.strip("/").split("/")
    if len(want) != len(have):
        return None
    found = {}
    for part, value in zip(want, have, strict=True):
        if part.startswith("{") and part.endswith("}"):
            found[part[1:-1]] = unquote(value)
        elif part != value:
            return None
    return found
