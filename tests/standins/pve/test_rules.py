"""The rules Proxmox applies on top of the schema, as the stand-in enforces them (rules.py), over HTTPS.

Who may set raw PCI devices and mappings (qemu-server Qemu.pm check_hostpci_perm, check_mapping_access)
and what a VM start checks of its hostpciN (qemu-server PCI.pm parse_hostpci, pve-guest-common
Mapping/PCI.pm assert_valid). Each refusal leaves the cluster as it was.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ansible_collections.lab.llm.plugins.module_utils.pve.client import PveClient
from ansible_collections.lab.llm.plugins.module_utils.pve.exceptions import PveApiError, PveTaskError
from ansible_collections.lab.llm.plugins.module_utils.pve.waiter import wait_for_task
from tests.standins.pve.scenario import connection_args, mapping_entry, running_standin
from tests.standins.pve.server import ALL_PRIVILEGES

PASSTHROUGH = {"name": "gpu", "machine": "q35", "memory": "4096"}


@pytest.fixture
def pve(shared_reference: Path, tmp_path: Path):
    with running_standin(shared_reference, tmp_path) as standin:
        yield standin


def token_client(standin, name: str | None = None, privileges=ALL_PRIVILEGES) -> PveClient:
    """The scenario's token, or a new token ``ansible@pve!NAME`` with ``privileges``."""
    token_id = name or connection_args(standin)["api_token_id"]
    secret = standin.add_token("ansible@pve", name, privileges) if name else standin.token_secret
    params = dict(connection_args(standin), api_token_id=token_id, api_token_secret=secret, api_password=None,
                  validate_certs=True, api_retries=1)  # fmt: skip
    return PveClient.from_params(params)


def root_client(standin, token: bool = False) -> PveClient:
    params = dict(connection_args(standin), api_user="root@pam", validate_certs=True, api_retries=1)
    if token:  # root's own API token: still not "root@pam" to qemu-server
        params.update(api_token_id="automation", api_token_secret=standin.add_token("root@pam", "automation"))
    else:
        params.update(api_token_id=None, api_token_secret=None, api_password=standin.users["root@pam"]["password"])
    return PveClient.from_params(params)


def refused(call, *args, **kwargs) -> PveApiError:
    with pytest.raises(PveApiError) as error:
        call(*args, **kwargs)
    return error.value


def test_raw_pci_is_root_at_pam_alone(pve) -> None:
    vm = pve.cluster.add_vm(150, "pve2", dict(PASSTHROUGH))
    for client in (token_client(pve), root_client(pve, token=True)):
        error = refused(client.put, "nodes/pve2/qemu/150/config", hostpci0="0000:01:00,pcie=1", memory="8192")
        assert error.status == 500
        assert "only root can set 'hostpci0' config for non-mapped devices" in error.reason
        assert vm.config == PASSTHROUGH  # nothing of the request applied
    root_client(pve).put("nodes/pve2/qemu/150/config", hostpci0="0000:01:00,pcie=1")
    assert vm.config["hostpci0"] == "0000:01:00,pcie=1"
    # Changing or deleting it later is root's alone too: the old value is checked.
    pve.cluster.mappings["rtx3090"] = {"map": [mapping_entry("pve2")]}
    assert (
        "non-mapped" in refused(token_client(pve).put, "nodes/pve2/qemu/150/config", hostpci0="mapping=rtx3090").reason
    )
    assert "non-mapped" in refused(token_client(pve).put, "nodes/pve2/qemu/150/config", delete="hostpci0").reason
    assert vm.config["hostpci0"] == "0000:01:00,pcie=1"


def test_raw_pci_in_an_asynchronous_config_update_fails_its_task(pve) -> None:
    vm = pve.cluster.add_vm(151, "pve2", dict(PASSTHROUGH))
    client = token_client(pve)
    upid = client.post("nodes/pve2/qemu/151/config", hostpci0="0000:01:00")
    with pytest.raises(PveTaskError, match="only root can set 'hostpci0'"):
        wait_for_task(client, upid, timeout=10, interval=0.05)
    assert "hostpci0" not in vm.config


def test_a_mapping_needs_mapping_use(pve) -> None:
    vm = pve.cluster.add_vm(152, "pve2", dict(PASSTHROUGH))
    pve.cluster.mappings["rtx3090"] = {"map": [mapping_entry("pve2")]}
    without = token_client(pve, "no-mapping-use", ALL_PRIVILEGES - {"Mapping.Use"})
    error = refused(without.put, "nodes/pve2/qemu/152/config", hostpci0="mapping=rtx3090,pcie=1")
    assert error.status == 403
    assert "Permission check failed (/mapping/pci/rtx3090, Mapping.Use)" in error.reason
    token_client(pve).put("nodes/pve2/qemu/152/config", hostpci0="mapping=rtx3090,pcie=1")
    assert vm.config["hostpci0"] == "mapping=rtx3090,pcie=1"


def test_cloning_a_vm_with_raw_pci_is_root_at_pam_alone(pve) -> None:
    pve.cluster.add_vm(153, "pve2", {**PASSTHROUGH, "hostpci0": "0000:01:00,pcie=1"})
    error = refused(token_client(pve).post, "nodes/pve2/qemu/153/clone", newid=154, name="copy")
    assert "only root can set 'hostpci0' config for non-mapped devices" in error.reason
    assert 154 not in pve.cluster.vms


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("node=pve2,path=0000:01:00,id=10de:2204",
         "missing expected property 'iommugroup' for device '0000:01:00.0'"),
        ("node=pve2,path=0000:01:00,id=10de:2204,iommugroup=14",
         "missing expected property 'subsystem-id' for device '0000:01:00.0'"),
        ("node=pve2,path=0000:01:00,id=10de:2204,subsystem-id=1043:87b3,iommugroup=13",
         "'iommugroup' does not match for 'gpu-map' (14 != 13)"),
        ("node=pve2,path=0000:01:00,id=10de:2206,subsystem-id=1043:87b3,iommugroup=14",
         "'id' does not match for 'gpu-map' (10de:2204 != 10de:2206)"),
        ("node=pve2,path=0000:41:00,id=10de:2204,subsystem-id=1043:87b3,iommugroup=14",
         "pci device '0000:41:00.0' not found"),
        ("node=pve3,path=0000:01:00,id=10de:2204,subsystem-id=1043:87b3,iommugroup=14",
         "PCI device mapping not found for 'gpu-map'"),
    ],
)  # fmt: skip
def test_start_checks_the_mapping_against_the_device(pve, entry: str, message: str) -> None:
    pve.cluster.mappings["gpu-map"] = {"map": [entry]}
    vm = pve.cluster.add_vm(160, "pve2", {**PASSTHROUGH, "hostpci0": "mapping=gpu-map,pcie=1"})
    client = token_client(pve)
    with pytest.raises(PveTaskError) as failed:
        wait_for_task(client, client.post("nodes/pve2/qemu/160/status/start"), timeout=10, interval=0.05)
    assert message in str(failed.value)
    assert vm.status == "stopped"


def test_start_with_a_complete_mapping_runs_and_one_device_serves_one_vm(pve) -> None:
    pve.cluster.mappings["gpu-map"] = {"map": [mapping_entry("pve2")]}
    first = pve.cluster.add_vm(161, "pve2", {**PASSTHROUGH, "hostpci0": "mapping=gpu-map,pcie=1"})
    pve.cluster.add_vm(162, "pve2", {**PASSTHROUGH, "hostpci0": "mapping=gpu-map,pcie=1"})
    client = token_client(pve)
    wait_for_task(client, client.post("nodes/pve2/qemu/161/status/start"), timeout=10, interval=0.05)
    assert first.status == "running"
    with pytest.raises(PveTaskError, match=re.escape("PCI device '0000:01:00.0' already in use by VMID '161'")):
        wait_for_task(client, client.post("nodes/pve2/qemu/162/status/start"), timeout=10, interval=0.05)


def test_pcie_needs_q35_at_start(pve) -> None:
    pve.cluster.mappings["gpu-map"] = {"map": [mapping_entry("pve2")]}
    pve.cluster.add_vm(163, "pve2", {**PASSTHROUGH, "machine": "pc", "hostpci0": "mapping=gpu-map,pcie=1"})
    client = token_client(pve)
    with pytest.raises(PveTaskError, match="q35 machine model is not enabled"):
        wait_for_task(client, client.post("nodes/pve2/qemu/163/status/start"), timeout=10, interval=0.05)


def test_mapping_api_answers_as_pve_manager(pve) -> None:
    client = token_client(pve)
    client.delete("cluster/mapping/pci/never-made")  # deleting what is not there is no error
    client.post("cluster/mapping/pci", id="twice", map=[mapping_entry("pve2")])
    assert "pci ID 'twice' already defined" in refused(client.post, "cluster/mapping/pci", id="twice",
                                                       map=[mapping_entry("pve2")]).reason  # fmt: skip
    assert "pci ID 'nope' does not exist" in refused(client.put, "cluster/mapping/pci/nope",
                                                     map=[mapping_entry("pve2")]).reason  # fmt: skip
