"""Stage 2 through ansible-playbook against the Proxmox API stand-in.

playbooks/gpu_vms.yml (role lab.llm.gpu_vm) for the reference lab (one RTX 3060 host, three RTX 3090
hosts) in three runs: all nodes but one, then ``--limit`` that node (only its VM and its mapping entry
are written), then everything again (changed=0, no write at all). And the two modules in one playbook
(modules_scenario.yml): a failed clone and its re-run, converging, live memory vs a pending GPU and
the restart, bad input.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.standins.pve.scenario import (
    GPUS,
    TEMPLATE_NAME,
    TEMPLATE_VMID,
    connection_args,
    mapping_entry,
    running_standin,
)

pytestmark = pytest.mark.playbook

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINYDR9JYyyug5eZrmtUx/hWRntaWghRo5xo+3YWnD3+Q admin@lab"
VM_ADDRESS = "127.0.0.2"  # what cloud-init gives the VMs here, and where the fake sshd listens


@pytest.fixture
def pve(shared_reference: Path, tmp_path_factory: pytest.TempPathFactory):
    """A fresh cluster per test (starting one takes milliseconds; the playbook runs take the time)."""
    with running_standin(shared_reference, tmp_path_factory.mktemp("pve")) as standin:
        yield standin


@pytest.fixture(scope="module")
def ssh_port():
    """A listener that greets like sshd, so wait_for(search_regex=SSH-2.0) has something real to wait for."""
    server = socket.socket()
    server.bind((VM_ADDRESS, 0))
    server.listen(16)

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                connection.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def host_stage_fact(node: str) -> list:
    """What lab.llm.proxmox_gpu_host exports as lab_llm_gpus (gpu_passthrough_facts' gpus) for one card."""
    device, _, sub_vendor, sub_device, group = GPUS[node]
    functions = [
        {"address": "0000:01:00.0", "vendor_id": "10de", "device_id": device, "subsystem_vendor_id": sub_vendor,
         "subsystem_device_id": sub_device, "class": "030000", "driver": "vfio-pci", "iommu_group": group},
        {"address": "0000:01:00.1", "vendor_id": "10de", "device_id": "228b", "subsystem_vendor_id": sub_vendor,
         "subsystem_device_id": sub_device, "class": "040300", "driver": "vfio-pci", "iommu_group": group},
    ]  # fmt: skip
    return [{"address": "0000:01:00", "model": "GeForce RTX 3090", "functions": functions, "iommu_group": group}]


def write_inventory(directory: Path, pve, ssh_port: int) -> Path:
    api = connection_args(pve)
    gpu_vars = {
        "gpu_vm_api_host": api["api_host"], "gpu_vm_api_port": api["api_port"], "gpu_vm_api_user": api["api_user"],
        "gpu_vm_api_token_id": api["api_token_id"], "gpu_vm_api_token_secret": api["api_token_secret"],
        "gpu_vm_api_ca_path": api["ca_path"], "gpu_vm_template": TEMPLATE_NAME, "gpu_vm_efidisk_storage": "ceph-vm",
        "gpu_vm_memory_mb": 16384, "gpu_vm_cores": 4, "gpu_vm_disk_size": "40G", "gpu_vm_ssh_keys": [KEY],
        "gpu_vm_ipconfig0": f"ip={VM_ADDRESS}/8", "gpu_vm_ssh_port": ssh_port, "gpu_vm_ssh_timeout": 20,
        "gpu_vm_agent_timeout": 30, "gpu_vm_pci_mapping": "rtx3090",
    }  # fmt: skip
    inventory = {
        "all": {
            "children": {
                # The 3090 hosts carry the host stage's fact; the 3060 host does not (its card comes from gpu_vm_gpus).
                "proxmox_gpu_hosts": {
                    "hosts": {
                        node: ({"lab_llm_gpus": host_stage_fact(node)} if node != "pve1" else {}) for node in GPUS
                    }
                },
                "gpu_nodes": {
                    "vars": gpu_vars,
                    "hosts": {
                        "gpu-3060-1": {
                            "pve_node": "pve1",
                            "gpu_vm_pci_mapping": "rtx3060",
                            "gpu_vm_gpus": [{"path": "0000:01:00", "id": "10de:2504", "iommugroup": 12}],
                        },
                        "gpu-3090-1": {"pve_node": "pve2"},
                        "gpu-3090-2": {"pve_node": "pve3"},
                        "gpu-3090-3": {"pve_node": "pve4"},
                    },
                },
            }
        }
    }
    path = directory / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def write_playbook(directory: Path) -> Path:
    """Stage 2, then a play on the group the VMs were added to, recording what a next stage would see."""
    playbook = [
        {"name": "Stage 2", "ansible.builtin.import_playbook": str(REPO_ROOT / "playbooks" / "gpu_vms.yml")},
        {
            "name": "What the next stage sees",
            "hosts": "gpu_vms",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Record the in-memory inventory entry",
                    "ansible.builtin.copy": {
                        "content": "{{ {'ansible_host': ansible_host, 'ansible_user': ansible_user, "
                        "'groups': group_names, 'vmid': gpu_vm_vmid} | to_json }}",
                        "dest": str(directory / "seen-{{ inventory_hostname }}.json"),
                        "mode": "0600",
                    },
                    "delegate_to": "localhost",
                }
            ],
        },
    ]
    path = directory / "stage2.yml"
    path.write_text(yaml.safe_dump(playbook, sort_keys=False))
    return path


def run_playbook(playbook: Path, inventory: Path | str, *extra: str) -> dict:
    """Run ansible-playbook; return the PLAY RECAP as {host: {ok, changed, failed, ...}}."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable)  # fmt: skip
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(playbook), *extra]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    recap = {}
    for host, counters in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", done.stdout, re.MULTILINE):
        recap[host] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counters)}
    return recap


def vm_of(pve, name: str):
    return next(vm for vm in pve.cluster.vms.values() if vm.config.get("name") == name)


def test_stage2_creates_adds_one_node_alone_and_converges(pve, ssh_port, tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path, pve, ssh_port)
    playbook = write_playbook(tmp_path)

    first = run_playbook(playbook, inventory, "--limit", "all:!gpu-3090-3")
    assert first["gpu-3060-1"]["changed"] >= 2  # mapping + VM
    assert sorted(pve.cluster.mappings) == ["rtx3060", "rtx3090"]
    # gpu_vm_gpus of gpu-3060-1 gives no subsystem id: the mapping module reads it from the node, because
    # Proxmox refuses to start a VM whose map entry lacks it.
    assert pve.cluster.mappings["rtx3060"]["map"] == [mapping_entry("pve1")]
    assert pve.cluster.mappings["rtx3090"]["map"] == [mapping_entry("pve2"), mapping_entry("pve3")]
    for name, node, mapping in [("gpu-3060-1", "pve1", "rtx3060"), ("gpu-3090-1", "pve2", "rtx3090"),
                                ("gpu-3090-2", "pve3", "rtx3090")]:  # fmt: skip
        vm = vm_of(pve, name)
        assert vm.node == node
        assert vm.status == "running"
        assert vm.config["hostpci0"] == f"mapping={mapping},pcie=1"
        assert vm.config["memory"] == "16384"
        assert vm.config["scsi0"].endswith("size=40G")
        seen = json.loads((tmp_path / f"seen-{name}.json").read_text())
        assert seen == {"ansible_host": VM_ADDRESS, "ansible_user": "debian", "groups": ["gpu_nodes", "gpu_vms"],
                        "vmid": vm.vmid}  # fmt: skip
    assert not any(vm.config.get("name") == "gpu-3090-3" for vm in pve.cluster.vms.values())

    writes_before = len(pve.cluster.writes())
    others = {name: dict(vm_of(pve, name).config) for name in ("gpu-3060-1", "gpu-3090-1", "gpu-3090-2")}
    second = run_playbook(playbook, inventory, "--limit", "gpu-3090-3")
    assert set(second) == {"gpu-3090-3"}
    new_vm = vm_of(pve, "gpu-3090-3")
    assert new_vm.node == "pve4"
    assert new_vm.status == "running"
    writes = pve.cluster.writes()[writes_before:]
    assert writes
    for _method, path in writes:
        assert (
            path == f"/nodes/pve1/qemu/{TEMPLATE_VMID}/clone"
            or path == "/cluster/mapping/pci/rtx3090"
            or path.startswith(f"/nodes/pve4/qemu/{new_vm.vmid}/")
        ), writes
    assert [entry.split(",")[0] for entry in pve.cluster.mappings["rtx3090"]["map"]] == [
        "node=pve2", "node=pve3", "node=pve4",
    ]  # fmt: skip
    assert "subsystem-id=3842:3973" in pve.cluster.mappings["rtx3090"]["map"][2]
    assert {name: vm_of(pve, name).config for name in others} == others

    writes_before = len(pve.cluster.writes())
    third = run_playbook(playbook, inventory)
    assert {host: counters["changed"] for host, counters in third.items() if host.startswith("gpu-")} == {
        "gpu-3060-1": 0, "gpu-3090-1": 0, "gpu-3090-2": 0, "gpu-3090-3": 0,
    }  # fmt: skip
    # The guest agent ping is a POST that changes nothing; everything else would be a change.
    assert [write for write in pve.cluster.writes()[writes_before:] if not write[1].endswith("/agent/ping")] == []


def test_modules_through_ansible_playbook(pve, tmp_path: Path) -> None:
    """One playbook: failed clone and its re-run, converge, live memory vs pending GPU, restart, bad input."""
    pve.cluster.add_vm(555, "pve2", {"name": "someones-db", "memory": "4096", "tags": "prod"}, status="running")
    pve.cluster.fail_next_task("qmclone", "clone failed: storage full while cloning")
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps({"pve_api": connection_args(pve), "ssh_key": KEY}))
    recap = run_playbook(Path(__file__).parent / "modules_scenario.yml", "localhost,", "-e", f"@{extra}")
    assert recap["localhost"]["failed"] == 0
    assert recap["localhost"]["ignored"] == 2
    names = [vm.config.get("name") for vm in pve.cluster.vms.values()]
    assert names.count("play-vm") == 1
    assert not {"bad-node", "bad-gpu", "bad-vmid", "bad-keys"} & set(names)
    assert pve.cluster.vms[555].config == {"name": "someones-db", "memory": "4096", "tags": "prod"}
