# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cluster PCI resource mappings (/cluster/mapping/pci, Proxmox VE 8): wanted entries, merge, diff.

A mapping has one or more ``map`` entries per node (``node=pve2,path=0000:01:00,id=10de:2204,...``);
VMs refer to it as ``hostpci0: mapping=NAME`` and Proxmox picks this node's entry at VM start.

At that start Proxmox checks every entry of the node against the device (pve-guest-common
``PVE::Mapping::PCI::assert_valid``): ``id`` always, ``subsystem-id`` when the device reports
subsystem ids, ``iommugroup`` when it is in an IOMMU group (first path only). A value the device has
and the entry lacks ("missing expected property 'iommugroup'"), or a different one ("'iommugroup' does
not match"), stops the VM from starting. So this module compares all three like that before writing,
and fills in the ones not given from the node's ``hardware/pci``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ansible_collections.lab.llm.plugins.module_utils.pve import propstring
from ansible_collections.lab.llm.plugins.module_utils.pve.client import PveClient
from ansible_collections.lab.llm.plugins.module_utils.pve.exceptions import PveInputError

# Key order as Proxmox prints map entries; patterns from the schema of POST /cluster/mapping/pci (map.items).
ENTRY_KEYS = ("node", "path", "id", "subsystem-id", "iommugroup", "description")
VENDOR_DEVICE = re.compile(r"^[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}$")
MAP_PATH = re.compile(
    r"^(?:[a-f0-9]{4,}:[a-f0-9]{2}:[a-f0-9]{2}(?:\.[a-f0-9])?;)*[a-f0-9]{4,}:[a-f0-9]{2}:[a-f0-9]{2}(?:\.[a-f0-9])?$"
)


def entry_from_params(item: dict) -> dict:
    """A module ``map`` item -> the API's entry keys, validated (raises PveInputError naming the value)."""
    entry = {"node": item["node"], "path": str(item["path"]).lower(), "id": str(item["id"]).lower()}
    if not MAP_PATH.match(entry["path"]):
        raise PveInputError("map: path %r of node %s is not a PCI path like 0000:01:00" % (item["path"], item["node"]))
    if not VENDOR_DEVICE.match(entry["id"]):
        raise PveInputError("map: id %r of node %s is not VENDOR:DEVICE like 10de:2204" % (item["id"], item["node"]))
    if item.get("subsystem_id"):
        entry["subsystem-id"] = str(item["subsystem_id"]).lower()
        if not VENDOR_DEVICE.match(entry["subsystem-id"]):
            raise PveInputError(
                "map: subsystem_id %r of node %s is not VENDOR:DEVICE" % (item["subsystem_id"], item["node"])
            )
    if item.get("iommugroup") is not None:
        entry["iommugroup"] = str(item["iommugroup"])
    if item.get("description"):
        entry["description"] = item["description"]
    return entry


def parse_entry(text: str | Mapping[str, object]) -> dict[str, str]:
    values = propstring.parse(text) if isinstance(text, str) else {key: str(value) for key, value in text.items()}
    for key in ("path", "id", "subsystem-id"):
        if key in values:
            values[key] = values[key].lower()
    return values


def render_entry(entry: dict) -> str:
    return ",".join("%s=%s" % (key, entry[key]) for key in ENTRY_KEYS if key in entry)


def merged_entries(current: list, wanted: list, prune: bool) -> list:
    """Entries of nodes we were given replace that node's entries; other nodes' entries stay unless prune."""
    wanted_nodes = {entry["node"] for entry in wanted}
    kept = [] if prune else [entry for entry in current if entry.get("node") not in wanted_nodes]
    return sorted(kept + wanted, key=lambda entry: (entry.get("node", ""), entry.get("path", "")))


def same_entries(left: list, right: list) -> bool:
    def key(entries: list) -> list[str]:
        return sorted(render_entry(entry) for entry in entries)

    return key(left) == key(right)


def _hex_pair(vendor: object, device: object) -> str | None:
    if vendor is None or device is None:
        return None
    return ("%s:%s" % (str(vendor).replace("0x", ""), str(device).replace("0x", ""))).lower()


def _expected(device: dict, first: bool) -> dict:
    """What assert_valid expects of an entry for this ``hardware/pci`` item (None: must be absent)."""
    group = device.get("iommugroup")
    expected = {
        "id": _hex_pair(device.get("vendor"), device.get("device")),
        "subsystem-id": _hex_pair(device.get("subsystem_vendor"), device.get("subsystem_device")),
    }
    if first:  # Proxmox checks the IOMMU group of the first path only
        expected["iommugroup"] = str(group) if group is not None and int(group) >= 0 else None
    return expected


WHAT = {"id": "vendor:device id", "subsystem-id": "subsystem id", "iommugroup": "IOMMU group"}
OPTION = {"id": "id", "subsystem-id": "subsystem_id", "iommugroup": "iommugroup"}


def check_devices(client: PveClient, entries: list, fill: bool = True) -> list:
    """Each entry checked as Proxmox checks it at VM start, against the node's ``hardware/pci``.

    Returns the entries with ``subsystem-id`` and ``iommugroup`` filled in from the device where they
    were not given (with ``fill=False`` a missing one is an error, as at VM start); raises PveInputError
    naming the node, device and value when the device is missing or a given value differs (a stale IOMMU
    group after a slot or BIOS change, another card model).
    """
    nodes = sorted(item["node"] for item in client.get("nodes"))
    devices_of: dict = {}
    result = []
    for entry in entries:
        node = entry["node"]
        if node not in nodes:
            raise PveInputError("map: node %r is not in the cluster (nodes: %s)" % (node, ", ".join(nodes)))
        if node not in devices_of:
            devices_of[node] = client.get("nodes/%s/hardware/pci" % node, **{"pci-class-blacklist": ""})
        entry = dict(entry)
        for index, path in enumerate(entry["path"].split(";")):
            function = path if "." in path else path + ".0"
            device = next((item for item in devices_of[node] if item["id"] == function), None)
            if device is None:
                raise PveInputError("map: PCI device %s is not on node %s" % (path, node))
            for key, found in _expected(device, index == 0).items():
                given = entry.get(key)
                if given is None:
                    if found is not None and not fill:
                        raise PveInputError(
                            "map: the entry of node %s for PCI device %s lacks %s (the device has %s); Proxmox "
                            "refuses to start a VM with it (\"missing expected property '%s'\")"
                            % (node, path, OPTION[key], found, key)
                        )
                    if found is not None:
                        entry[key] = found
                elif found is None:
                    raise PveInputError(
                        "map: %s=%s given for PCI device %s on node %s, which has no %s; Proxmox refuses "
                        "to start a VM with it" % (OPTION[key], given, path, node, WHAT[key])
                    )
                elif str(given).lower() != found:
                    raise PveInputError(
                        "map: PCI device %s on node %s has %s %s, not %s (%s is stale or wrong); Proxmox "
                        "refuses to start a VM with it" % (path, node, WHAT[key], found, given, OPTION[key])
                    )
        result.append(entry)
    return result


def require_device_properties(entries: list) -> None:
    """Without the device check, every entry must carry what Proxmox will check at VM start."""
    for entry in entries:
        missing = [OPTION[key] for key in ("subsystem-id", "iommugroup") if entry.get(key) is None]
        if missing:
            raise PveInputError(
                "map: the entry of node %s (%s) lacks %s; Proxmox checks them against the device at VM start "
                '("missing expected property"). Give them, or set check_devices=true to read them from the node'
                % (entry["node"], entry["path"], " and ".join(missing))
            )


def ensure_mapping(client: PveClient, params: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    """Bring the mapping ``params['name']`` to the wanted state; the result dict of the module."""
    name = params["name"]
    wanted = [entry_from_params(item) for item in params["map"]]
    existing = next((item for item in client.get("cluster/mapping/pci") if item["id"] == name), None)
    before = None
    if existing is not None:
        before = {
            "id": name,
            "description": existing.get("description", ""),
            "map": [parse_entry(entry) for entry in existing.get("map", [])],
        }
    if params["state"] == "absent":
        if before is None:
            return {"changed": False}
        if not check_mode:
            client.delete("cluster/mapping/pci/%s" % name)
        return {"changed": True, "diff": {"before": _show(before), "after": {}}}
    if not wanted and before is None:
        raise PveInputError("PCI mapping %r does not exist and map is empty: give at least one device" % name)
    if params["check_devices"]:
        wanted = check_devices(client, wanted)
    else:
        require_device_properties(wanted)
    after = {
        "id": name,
        "description": params["description"]
        if params["description"] is not None
        else (before or {}).get("description", ""),
        "map": merged_entries(before["map"] if before else [], wanted, params["prune"]),
    }
    changed = (
        before is None or before["description"] != after["description"] or not same_entries(before["map"], after["map"])
    )
    if changed and not check_mode:
        body = {"map": [render_entry(entry) for entry in after["map"]]}
        if after["description"]:
            body["description"] = after["description"]
        if before is None:
            client.post("cluster/mapping/pci", id=name, **body)
        else:
            client.put("cluster/mapping/pci/%s" % name, **body)
    result = {"changed": changed, "mapping": _show(after)}
    if changed:
        result["diff"] = {"before": _show(before) if before else {}, "after": _show(after)}
    return result


def _show(mapping: dict) -> dict:
    return dict(mapping, map=[render_entry(entry) for entry in mapping["map"]])
