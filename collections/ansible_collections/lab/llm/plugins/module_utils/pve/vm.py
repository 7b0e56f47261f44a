# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""QEMU VMs on Proxmox VE: lookups, the wanted config of a GPU VM, and the diff against what is there."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from ansible_collections.lab.llm.plugins.module_utils.pve import propstring
from ansible_collections.lab.llm.plugins.module_utils.pve.client import PveClient
from ansible_collections.lab.llm.plugins.module_utils.pve.exceptions import PveInputError

# The bare (default) key of each property-string option we manage, from the API schema (default_key).
DEFAULT_KEYS = {
    "hostpci": "host",
    "cpu": "cputype",
    "net": "model",
    "efidisk0": "file",
    "scsi": "file",
    "virtio": "file",
    "sata": "file",
    "agent": "enabled",
    "memory": "current",
    "machine": "type",
}

# Options that never change on a running VM: Proxmox keeps them as pending until the next start.
# (qemu-server applies only "fast plug" options and the features listed in `hotplug` live.)
RESTART_KEYS = ("hostpci", "machine", "bios", "cpu", "cores", "sockets", "numa", "balloon", "efidisk0", "agent")

HOSTPCI_ADDRESS = re.compile(r"^(?:[0-9a-f]{4,}:)?[0-9a-f]{2}:[0-9a-f]{2}(?:\.[0-7])?$")
SSH_PUBLIC_KEY = re.compile(
    r"^(?:ssh-(?:rsa|ed25519|dss)|ecdsa-sha2-nistp(?:256|384|521)|sk-(?:ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)"
    r" [A-Za-z0-9+/]+={0,3}(?: [^\r\n]*)?$"
)
SIZE = re.compile(r"^(\d+(?:\.\d+)?)([KMGT]?)$")
SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def option_family(key: str) -> str:
    """``hostpci3`` -> ``hostpci``; ``efidisk0`` stays itself (a fixed name, not an indexed one)."""
    if key in DEFAULT_KEYS:
        return key
    return re.sub(r"\d+$", "", key)


def size_bytes(text: str) -> int:
    """``32G`` / ``2252M`` / ``34359738368`` -> bytes (the API's disk-size format)."""
    match = SIZE.match(str(text).strip().upper())
    if not match:
        raise PveInputError("not a disk size: %r (use e.g. 32G)" % text)
    return int(float(match.group(1)) * SIZE_UNITS[match.group(2)])


# What Proxmox VE accepts for the options this module sets: the API schema of POST nodes/{node}/qemu/{vmid}/clone
# and PUT .../config (pve-docs api-viewer apidata.js; formats from pve-common PVE::JSONSchema and qemu-server).
# Checked before the first write so that a value Proxmox would answer with 400 never leaves a half-made VM.
DNS_NAME = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?\.)*[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?$")
TAG = re.compile(r"^[a-z0-9_][a-z0-9_\-+.]*$", re.IGNORECASE)
STORAGE_ID = re.compile(r"^[a-z][a-z0-9\-_.]*[a-z0-9]$", re.IGNORECASE)
MACHINE_TYPE = re.compile(
    r"^(?:pc|pc(?:-i440fx)?-\d+(?:\.\d+)+(?:\+pve\d+)?(?:\.pxe)?|q35|pc-q35-\d+(?:\.\d+)+(?:\+pve\d+)?(?:\.pxe)?"
    r"|virt(?:-\d+(?:\.\d+)+)?(?:\+pve\d+)?)$"
)
MACHINE_TYPE_MAX_LENGTH = 40
DISK_KEY = re.compile(r"^(?:scsi(?:[0-9]|[12][0-9]|30)|virtio(?:[0-9]|1[0-5])|sata[0-5]|ide[0-3])$")
HOTPLUG_FEATURES = ("network", "disk", "cpu", "memory", "usb", "cloudinit")
VMID_RANGE = (100, 999999999)
INT_MINIMUMS = {"cores": 1, "sockets": 1, "memory": 16}
NETWORK_RANGES = {"vlan": ("tag", 1, 4094), "mtu": ("mtu", 1, 65520)}
NIC_MODELS = (
    "e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e", "i82551", "i82557b", "i82559er",
    "ne2k_isa", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3",
)  # fmt: skip


def settings_problems(params: dict) -> list[str]:
    """Every module option whose value Proxmox VE would refuse (HTTP 400), as ``option=value: rule`` lines.

    ``params`` are the module's parameters. An empty list means the API schema accepts them all.
    """
    problems = []
    if not DNS_NAME.match(params["name"] or ""):
        problems.append(
            "name=%r: Proxmox requires a DNS name (letters, digits and '-' in dot-separated labels, "
            "no '-' at either end of a label)" % params["name"]
        )
    vmid = params.get("vmid")
    if vmid is not None and not VMID_RANGE[0] <= vmid <= VMID_RANGE[1]:
        problems.append("vmid=%s: Proxmox requires %d to %d" % (vmid, VMID_RANGE[0], VMID_RANGE[1]))
    for option, minimum in INT_MINIMUMS.items():
        if params[option] < minimum:
            unit = " MiB" if option == "memory" else ""
            problems.append("%s=%s: Proxmox requires at least %d%s" % (option, params[option], minimum, unit))
    machine = params["machine"]
    if len(machine) > MACHINE_TYPE_MAX_LENGTH or not MACHINE_TYPE.match(machine):
        problems.append("machine=%r: not a QEMU machine type Proxmox accepts (q35, pc, pc-q35-9.2, ...)" % machine)
    if not DISK_KEY.match(params["disk"]):
        problems.append("disk=%r: Proxmox disks are scsi0-30, virtio0-15, sata0-5 or ide0-3" % params["disk"])
    for option in ("storage", "efidisk_storage"):
        if params.get(option) is not None and not STORAGE_ID.match(params[option]):
            problems.append("%s=%r: not a Proxmox storage ID" % (option, params[option]))
    hotplug = params.get("hotplug")
    if hotplug is not None and hotplug not in ("0", "1"):
        unknown = [item for item in hotplug.split(",") if item not in HOTPLUG_FEATURES]
        if unknown:
            problems.append(
                "hotplug=%r: unknown feature %s (Proxmox knows %s, or 0/1)"
                % (hotplug, ", ".join(map(repr, unknown)), ",".join(HOTPLUG_FEATURES))
            )
    for option in ("tags", "managed_tag"):
        values = params.get(option) or []
        for tag in [values] if isinstance(values, str) else values:
            if not TAG.match(tag):
                problems.append(
                    "%s: %r is not a Proxmox tag (letters, digits, '_', '-', '+', '.'; not starting with '-', '+' "
                    "or '.')" % (option, tag)
                )
    network = params.get("network") or {}
    for option, (api_key, low, high) in NETWORK_RANGES.items():
        value = network.get(option)
        if value is not None and not low <= value <= high:
            problems.append(
                "network.%s=%s: Proxmox requires net0 %s from %d to %d" % (option, value, api_key, low, high)
            )
    nameserver = (params.get("cloud_init") or {}).get("nameserver")
    if nameserver:
        for item in re.split(r"[,; ]", nameserver):
            if item and not _is_ip_address(item):
                problems.append("cloud_init.nameserver: %r is not an IP address" % item)
    return problems


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def validate_sshkeys(keys: list) -> None:
    """One OpenSSH public key per item; a newline inside an item or a wrapped key is an input error."""
    for index, key in enumerate(keys):
        if "\n" in key.strip() or "\r" in key:
            raise PveInputError("sshkeys[%d] holds more than one line; give one public key per list item" % index)
        if not SSH_PUBLIC_KEY.match(key.strip()) or not _blob_matches_type(key.strip()):
            raise PveInputError(
                "sshkeys[%d] is not an OpenSSH public key ('TYPE BASE64 [COMMENT]' on one line): %r" % (index, key[:40])
            )


def _blob_matches_type(key: str) -> bool:
    """The base64 blob of a public key starts with its type name (RFC 4253 string); a cut key does not."""
    key_type, blob = key.split(" ")[:2]
    try:
        data = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return False
    length = int.from_bytes(data[:4], "big")
    return data[4 : 4 + length] == key_type.encode()


def hostpci_value(gpu: dict) -> str:
    """One ``gpus`` item -> the ``hostpci[n]`` property string (pcie=1 needs machine q35)."""
    values = {}
    if gpu.get("mapping"):
        values["mapping"] = gpu["mapping"]
    else:
        host = gpu.get("host") or ""
        if not HOSTPCI_ADDRESS.match(host):
            raise PveInputError("gpus: host %r is not a PCI address like 0000:01:00 or 01:00.0" % host)
        values["host"] = host
    if gpu.get("pcie", True):
        values["pcie"] = "1"
    if gpu.get("x_vga"):
        values["x-vga"] = "1"
    if gpu.get("rombar") is False:
        values["rombar"] = "0"
    return propstring.render(values, "host")


ROOT_USER = "root@pam"


def raw_pci_allowed(params: dict) -> bool:
    """Whether Proxmox lets these credentials set, change or delete a raw ``hostpciN: host=...``.

    qemu-server (src/PVE/API2/Qemu.pm, ``check_hostpci_perm``) allows it only when the authenticated
    user is exactly ``root@pam``; with an API token that user is the token id (``root@pam!NAME``,
    pve-manager PVE/HTTPServer.pm), so only root's password login qualifies.
    """
    return not params.get("api_token_secret") and params.get("api_user") == ROOT_USER


def raw_pci_refusal(params: dict, what: str) -> str:
    who = (
        "the API token %s!%s" % (params.get("api_user"), params.get("api_token_id"))
        if params.get("api_token_secret")
        else "user %s" % params.get("api_user")
    )
    return (
        "%s: Proxmox lets only root@pam (password login, not even root's API tokens) set, change or delete a "
        "raw PCI device (hostpciN with host=), and this module authenticates as %s. Use a cluster resource "
        "mapping instead: create it with lab.llm.proxmox_pci_mapping and give gpus: [{mapping: NAME}] (the "
        "token needs Mapping.Use on /mapping/pci/NAME)" % (what, who)
    )


def desired_config(params: dict, current: dict, managed_tag: str) -> tuple:
    """The wanted config of a GPU VM as API values, and the options to delete (surplus hostpci)."""
    wanted = {
        "name": params["name"],
        "machine": params["machine"],
        "bios": params["bios"],
        "cores": params["cores"],
        "sockets": params["sockets"],
        "numa": 1 if params["numa"] else 0,
        "memory": str(params["memory"]),
        # Passthrough pins all guest memory for DMA: a balloon could never give any back.
        "balloon": 0,
        "onboot": 1 if params["onboot"] else 0,
        "tags": ";".join(sorted(set(params["tags"] or []) | {managed_tag})),
    }
    cpu = {"cputype": params["cpu"]}
    if params["cpu_hidden"]:
        cpu["hidden"] = "1"
    wanted["cpu"] = propstring.render(cpu, "cputype")
    if params["agent"]:
        wanted["agent"] = "1"
    if params["hotplug"] is not None:
        wanted["hotplug"] = params["hotplug"]
    if params["bios"] == "ovmf" and "efidisk0" not in current:
        wanted["efidisk0"] = "%s:1,efitype=4m,pre-enrolled-keys=0" % params["efidisk_storage"]
    for index, gpu in enumerate(params["gpus"] or []):
        wanted["hostpci%d" % index] = hostpci_value(gpu)
    network = params["network"]
    if network:
        net = {"model": network.get("model") or "virtio", "bridge": network.get("bridge") or "vmbr0"}
        if network.get("vlan"):
            net["tag"] = str(network["vlan"])
        if network.get("mtu"):
            net["mtu"] = str(network["mtu"])
        wanted["net0"] = propstring.render(net, "model")
    cloud_init = params["cloud_init"] or {}
    if cloud_init.get("ipconfig0"):
        wanted["ipconfig0"] = cloud_init["ipconfig0"]
    for option in ("ciuser", "nameserver", "searchdomain"):
        if cloud_init.get(option):
            wanted[option] = cloud_init[option]
    if cloud_init.get("sshkeys"):
        wanted["sshkeys"] = propstring.encode_sshkeys(cloud_init["sshkeys"])
    wanted = {key: value for key, value in wanted.items() if value is not None}
    gpu_count = len(params["gpus"] or [])
    surplus = sorted(
        (key for key in current if option_family(key) == "hostpci" and int(key[len("hostpci") :]) >= gpu_count),
        key=lambda key: int(key[len("hostpci") :]),
    )
    return wanted, surplus


def values_equal(key: str, current: Any, wanted: Any) -> bool:
    """Compare one option as Proxmox means it, not as text (order of properties, aliases, encodings).

    ``current`` and ``wanted`` are the option's values as the API has them (text, or a number for memory, cores...).
    """
    if current is None:
        return False
    family = option_family(key)
    if key == "sshkeys":
        return propstring.decode_sshkeys(current) == propstring.decode_sshkeys(wanted)
    if key == "tags":
        return propstring.split_tags(current) == propstring.split_tags(wanted)
    if key == "hotplug":
        return sorted(str(current).split(",")) == sorted(str(wanted).split(","))
    if family == "net":
        # Only what we set counts: Proxmox adds the MAC (as model=MAC) and may add firewall etc.
        have = propstring.normalize_net(propstring.parse(current, "model"))
        want = propstring.normalize_net(propstring.parse(wanted, "model"))
        return all(have.get(name) == value for name, value in want.items())
    if family in ("hostpci", "cpu", "memory", "agent", "machine", "ipconfig"):
        default_key = DEFAULT_KEYS.get(family)
        return propstring.parse(current, default_key) == propstring.parse(wanted, default_key)
    return str(current) == str(wanted)


def config_changes(current: dict, wanted: dict) -> dict:
    """Options whose wanted value differs from the current config."""
    return {key: value for key, value in wanted.items() if not values_equal(key, current.get(key), value)}


def needs_restart(keys: Iterable[str]) -> list[str]:
    """Which of these options only take effect after a stop/start of the VM."""
    return sorted(key for key in keys if option_family(key) in RESTART_KEYS)


def disk_size_change(current: dict, disk: str, wanted_size: str) -> str | None:
    """The size to grow ``disk`` to, or None when it is already as big; never shrinks."""
    if disk not in current:
        raise PveInputError("disk %s is not in the VM's config (it has %s)" % (disk, ", ".join(_disks(current))))
    have = propstring.parse(current[disk], DEFAULT_KEYS["scsi"]).get("size")
    if have is not None and size_bytes(have) >= size_bytes(wanted_size):
        return None
    return str(wanted_size).upper()


def _disks(config: dict) -> list:
    return sorted(key for key in config if option_family(key) in ("scsi", "virtio", "sata")) or ["no disks"]


def pending_keys(client: PveClient, node: str, vmid: int) -> list[str]:
    """Options whose pending value differs from the running one (GET config vs GET config current=1)."""
    path = "nodes/%s/qemu/%s/config" % (node, vmid)
    pending = client.get(path)
    running = client.get(path, current=1)
    keys = set(pending) | set(running)
    return sorted(key for key in keys if key != "digest" and pending.get(key) != running.get(key))


def find_vms(client: PveClient) -> list[dict[str, Any]]:
    """All VMs and templates of the cluster (GET /cluster/resources type=vm)."""
    return [item for item in client.get("cluster/resources", type="vm") if item.get("type") == "qemu"]


# Written by the clone itself, so a VM whose first run stopped before its tags were set is still ours.
CLONE_MARKER = "Managed by lab.llm.proxmox_gpu_vm"


def is_managed(client: PveClient, resource: dict, managed_tag: str) -> bool:
    """Ours if it carries the tag, or (interrupted first run) the marker its clone was given."""
    if managed_tag in propstring.split_tags(resource.get("tags")):
        return True
    config = client.get("nodes/%s/qemu/%s/config" % (resource["node"], resource["vmid"]))
    return CLONE_MARKER in (config.get("description") or "")
