"""The reference lab as the stand-in's starting state: pve1 with an RTX 3060, pve2..pve4 with an RTX 3090 each,
Ceph RBD shared by all, and a cloud-init template on pve1 (ids as a Debian cloud image template would have)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from tests.standins.pve.cluster import Cluster
from tests.standins.pve.server import PveStandin

TOKEN_USER, TOKEN_ID = "ansible@pve", "lab"
TEMPLATE_VMID = 9000
TEMPLATE_NAME = "debian-12-cloudinit"
STORAGES = {"local-lvm": {"shared": 0, "type": "lvmthin"}, "ceph-vm": {"shared": 1, "type": "rbd"}}

# What GET /nodes/{node}/hardware/pci reports for the cards (NVIDIA 10de; 2504 = GA106 RTX 3060, 2204 = GA102 RTX 3090).
GPUS = {
    "pve1": ("2504", "10de:2504", "1458", "4074", 12),
    "pve2": ("2204", "10de:2204", "1043", "87b3", 14),
    "pve3": ("2204", "10de:2204", "1043", "87b3", 14),
    "pve4": ("2204", "10de:2204", "3842", "3973", 15),
}


def gpu_functions(device: str, sub_vendor: str, sub_device: str, group: int) -> list:
    """The VGA function and its HDMI audio function at 0000:01:00, as the node's PCI list shows them."""
    return [
        {"id": "0000:01:00.0", "class": "0x030000", "vendor": "0x10de", "device": "0x" + device,
         "subsystem_vendor": "0x" + sub_vendor, "subsystem_device": "0x" + sub_device, "iommugroup": group,
         "vendor_name": "NVIDIA Corporation", "device_name": "GA10x", "mdev": 0},
        {"id": "0000:01:00.1", "class": "0x040300", "vendor": "0x10de", "device": "0x228b",
         "subsystem_vendor": "0x" + sub_vendor, "subsystem_device": "0x" + sub_device, "iommugroup": group,
         "vendor_name": "NVIDIA Corporation", "device_name": "GA10x HD Audio"},
        {"id": "0000:00:01.0", "class": "0x060400", "vendor": "0x8086", "device": "0x1901", "iommugroup": 1,
         "subsystem_vendor": "0x0000", "subsystem_device": "0x0000"},
    ]  # fmt: skip


def reference_lab(cluster: Cluster) -> Cluster:
    for node, (device, _, sub_vendor, sub_device, group) in GPUS.items():
        cluster.add_node(node, gpu_functions(device, sub_vendor, sub_device, group), dict(STORAGES))
    cluster.add_vm(
        TEMPLATE_VMID,
        "pve1",
        {
            "name": TEMPLATE_NAME, "template": 1, "memory": "2048", "cores": 2, "ostype": "l26",
            "scsihw": "virtio-scsi-single", "scsi0": "ceph-vm:base-9000-disk-0,size=3G",
            "ide2": "ceph-vm:vm-9000-cloudinit,media=cdrom", "net0": "virtio=BC:24:11:AA:00:01,bridge=vmbr0",
            "serial0": "socket", "vga": "serial0", "boot": "order=scsi0",
        },
    )  # fmt: skip
    return cluster


@contextmanager
def running_standin(reference: Path, workdir: Path, task_seconds: float = 0.1, agent_seconds: float = 0.2):
    """The stand-in with the reference lab and an all-privileges token ``ansible@pve!lab``, on loopback."""
    with PveStandin(reference / "proxmox" / "pve-api-subset.json", workdir, task_seconds, agent_seconds) as standin:
        reference_lab(standin.cluster)
        standin.token_secret = standin.add_token(TOKEN_USER, TOKEN_ID)
        yield standin


def mapping_entry(node: str) -> str:
    """The complete map entry of a node's GPU (what Proxmox checks at VM start, pve-guest-common assert_valid)."""
    _, vendor_device, sub_vendor, sub_device, group = GPUS[node]
    return f"node={node},path=0000:01:00,id={vendor_device},subsystem-id={sub_vendor}:{sub_device},iommugroup={group}"


def root_connection_args(standin: PveStandin) -> dict:
    """Module connection options for root@pam with its password (a ticket, the only login allowed raw PCI)."""
    args = {key: value for key, value in connection_args(standin).items() if not key.startswith("api_token")}
    return {**args, "api_user": "root@pam", "api_password": standin.users["root@pam"]["password"]}


def connection_args(standin: PveStandin) -> dict:
    """Module connection options for the stand-in (TLS verified against its own certificate)."""
    return {
        "api_host": "127.0.0.1",
        "api_port": standin.port,
        "api_user": TOKEN_USER,
        "api_token_id": TOKEN_ID,
        "api_token_secret": standin.token_secret,
        "ca_path": str(standin.ca_file),
        "api_timeout": 10,
    }
