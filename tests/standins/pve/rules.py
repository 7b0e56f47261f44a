"""The rules Proxmox VE applies on top of the parameter schema, for the stand-in's handlers.

Read from Proxmox's own code (commits in README.md); each function names the sub it follows:

- qemu-server ``src/PVE/API2/Qemu.pm``: ``check_hostpci_perm`` (who may set, change or delete a
  ``hostpciN``), ``check_vm_create_hostpci_perm`` (create), ``update_vm_api`` (calls it for the old
  and the new value, and for deletions), ``clone_vm`` (``check_mapping_access`` on the source's config
  before anything happens).
- qemu-server ``src/PVE/QemuServer.pm``: ``check_mapping_access``.
- qemu-server ``src/PVE/QemuServer/PCI.pm``: ``parse_hostpci`` (at VM start: the mapping must have
  entries for the node, each checked by ``assert_valid``; a raw host address must exist),
  ``parse_hostpci_devices`` (``pcie`` needs q35), ``choose_hostpci_devices`` (no device twice),
  ``reserve_pci_usage`` (no device in two running VMs).
- pve-guest-common ``src/PVE/Mapping/PCI.pm``: ``assert_valid`` (the entry's ``id``, ``subsystem-id``,
  ``iommugroup`` and the mapping's ``mdev`` against the device, from pve-common
  ``PVE::SysFSTools::pci_device_info``).
- pve-manager ``PVE/HTTPServer.pm``: with an API token the authenticated user is the token id
  ``USER@REALM!TOKEN``, so ``$authuser eq 'root@pam'`` is false even for root's tokens.

A ``die`` in a synchronous API call is HTTP 500 with the message; ``raise_perm_exc`` is 403
"Permission check failed (PATH, PRIV)"; ``raise_param_exc`` is 400 with ``errors``.
"""

from __future__ import annotations

import re

ROOT = "root@pam"
HOSTPCI = re.compile(r"^hostpci\d+$")


class ApiError(Exception):
    """An HTTP error as Proxmox sends it: the message goes into the reason phrase and the body."""

    def __init__(self, status: int, message: str, errors: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


class AuthUser(str):
    """The authenticated user as qemu-server compares it (``root@pam``, ``ansible@pve!lab``), with the
    privileges of the user or token (the stand-in does not scope privileges by path)."""

    privileges: frozenset = frozenset()

    @classmethod
    def of(cls, name: str, privileges) -> AuthUser:
        user = cls(name)
        user.privileges = frozenset(privileges)
        return user


def parse_property_string(value: str, default_key: str) -> dict:
    """``mapping=rtx3090,pcie=1`` / ``0000:01:00,pcie=1`` -> dict (the bare value is ``default_key``)."""
    result = {}
    for part in str(value).split(","):
        key, separator, item = part.partition("=")
        if separator:
            result[key] = item
        elif part:
            result[default_key] = part
    return result


def _check_full(user: AuthUser, path: str, privilege: str) -> None:
    if privilege not in getattr(user, "privileges", frozenset()):
        raise ApiError(403, f"Permission check failed ({path}, {privilege})")


def check_hostpci_perm(user: AuthUser, option: str, value: str) -> None:
    """Qemu.pm ``check_hostpci_perm``: raw ``host`` only for root@pam; a mapping needs Mapping.Use on
    /mapping/pci/NAME and VM.Config.HWType; ``romfile`` only for root@pam."""
    if user == ROOT:
        return
    device = parse_property_string(value, "host")
    if device.get("host"):
        raise ApiError(500, f"only root can set '{option}' config for non-mapped devices")
    if device.get("mapping"):
        _check_full(user, "/mapping/pci/{}".format(device["mapping"]), "Mapping.Use")
        _check_full(user, "/vms/{vmid}", "VM.Config.HWType")
    else:
        raise ApiError(500, "either 'host' or 'mapping' must be set.")
    if "romfile" in device:
        raise ApiError(400, "Parameter verification failed.", {option: "only root@pam can set 'romfile' option"})


def check_config_update(user: AuthUser, current: dict, changes: dict, deletes: list) -> None:
    """Qemu.pm ``update_vm_api``: each hostpciN set is checked with its old value (if any) and its new
    one; each hostpciN deleted with its old value."""
    for option in deletes:
        if HOSTPCI.match(option) and option in current:
            check_hostpci_perm(user, option, current[option])
    for option, value in changes.items():
        if HOSTPCI.match(option):
            if option in current:
                check_hostpci_perm(user, option, current[option])
            check_hostpci_perm(user, option, value)


def check_mapping_access(user: AuthUser, config: dict) -> None:
    """QemuServer.pm ``check_mapping_access`` (clone, restore): the source's devices, as for setting them."""
    if user == ROOT:
        return
    for option, value in sorted(config.items()):
        if not HOSTPCI.match(option):
            continue
        device = parse_property_string(value, "host")
        if device.get("host"):
            raise ApiError(500, f"only root can set '{option}' config for non-mapped devices")
        if device.get("mapping"):
            _check_full(user, "/mapping/pci/{}".format(device["mapping"]), "Mapping.Use")
        else:
            raise ApiError(500, "either 'host' or 'mapping' must be set.")


def _hex(value) -> str:
    return str(value).replace("0x", "")


def assert_valid(name: str, entry: dict, mapping: dict, devices: list) -> None:
    """Mapping/PCI.pm ``assert_valid``: every path of the entry against the node's device.

    Expected: ``id`` always; ``iommugroup`` when the device has one (first path only);
    ``subsystem-id`` when the device reports subsystem ids; ``mdev`` as the mapping's flag. A value the
    device has but the entry lacks, one the entry has but the device lacks, or a different value fails.
    """
    for index, path in enumerate(entry.get("path", "").split(";")):
        if not re.search(r"\.[a-f0-9]$", path, re.IGNORECASE):
            path = f"{path}.0"  # whole device: the attributes of function 0
        device = next((item for item in devices if item["id"] == path), None)
        if device is None:
            raise ApiError(500, f"pci device '{path}' not found")
        expected = {
            "id": "{}:{}".format(_hex(device["vendor"]), _hex(device["device"])),
            "iommugroup": device["iommugroup"] if device.get("iommugroup", -1) >= 0 else None,
            "subsystem-id": None,
            "mdev": 1 if device.get("mdev") else 0,
        }
        if device.get("subsystem_vendor") is not None and device.get("subsystem_device") is not None:
            expected["subsystem-id"] = "{}:{}".format(
                _hex(device["subsystem_vendor"]), _hex(device["subsystem_device"])
            )
        configured = {key: entry.get(key) for key in ("id", "iommugroup", "subsystem-id")}
        configured["mdev"] = 1 if str(mapping.get("mdev", 0)) in ("1", "true") else 0
        for prop in sorted(expected):
            if prop == "iommugroup" and index > 0:
                continue
            want, have = expected[prop], configured[prop]
            if want is None and have is None:
                continue
            if have is None:
                raise ApiError(500, f"missing expected property '{prop}' for device '{path}'")
            if want is None:
                raise ApiError(500, f"unexpected property '{prop}' configured for device '{path}'")
            if _hex(want) != _hex(have):
                raise ApiError(500, f"'{prop}' does not match for '{name}' ({_hex(want)} != {_hex(have)})")


def hostpci_devices_at_start(node: str, config: dict, mappings: dict, devices: list) -> dict:
    """PCI.pm ``parse_hostpci_devices`` + ``parse_hostpci`` + ``choose_hostpci_devices`` for a start:
    ``{option: [pci ids]}``, or ApiError with the message the start task ends with."""
    machine = parse_property_string(config.get("machine", ""), "type").get("type", "")
    chosen: dict = {}
    used: set = set()
    for option in sorted((key for key in config if HOSTPCI.match(key)), key=lambda key: int(key[7:])):
        device = parse_property_string(config[option], "host")
        if device.get("host") and device.get("mapping"):
            raise ApiError(500, "Cannot set both 'host' and 'mapping'.")
        if device.get("mapping"):
            name = device["mapping"]
            mapping = mappings.get(name)
            entries = [parse_property_string(e, "node") for e in (mapping or {}).get("map", [])]
            entries = [e for e in entries if e.get("node") == node]
            if not entries:
                raise ApiError(500, f"PCI device mapping not found for '{name}'")
            for entry in entries:
                try:
                    assert_valid(name, entry, mapping, devices)
                except ApiError as error:
                    raise ApiError(
                        500, f"PCI device mapping invalid (hardware probably changed): {error.message}"
                    ) from None
            paths = entries[0]["path"].split(";")
        elif device.get("host"):
            paths = device["host"].split(";")
        else:
            raise ApiError(500, "Either 'host' or 'mapping' must be set.")
        if device.get("pcie") in ("1", "on", "yes", "true") and "q35" not in machine:
            raise ApiError(500, "q35 machine model is not enabled")
        ids = []
        for path in paths:
            address = path if path.count(":") == 2 else "0000:" + path
            found = [item["id"] for item in devices if item["id"] == address or item["id"].startswith(address + ".")]
            if not found:
                raise ApiError(500, f"no PCI device found for '{path}'")
            ids += found
        for pci_id in ids:
            if pci_id in used:
                raise ApiError(500, f"device '{pci_id}' assigned more than once")
            used.add(pci_id)
        chosen[option] = ids
    return chosen
