"""module_utils/pve/vm.py: the wanted VM config, its comparison with the live one, and what needs a restart."""

from __future__ import annotations

import pytest

from ansible_collections.lab.llm.plugins.module_utils.pve import vm as vms
from ansible_collections.lab.llm.plugins.module_utils.pve.exceptions import (
    PveInputError,
)

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINYDR9JYyyug5eZrmtUx/hWRntaWghRo5xo+3YWnD3+Q admin@lab"


def test_net_model_given_as_mac_alias_compares_equal_to_model_and_bridge() -> None:
    assert vms.values_equal("net0", "virtio=BC:24:11:00:00:65,bridge=vmbr0,firewall=1", "virtio,bridge=vmbr0")
    assert not vms.values_equal("net0", "virtio=BC:24:11:00:00:65,bridge=vmbr1", "virtio,bridge=vmbr0")


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ([KEY + "\n" + KEY], "more than one line"),
        (["ssh-ed25519 AAAAC3Nza C1lZDI1NTE5 wrapped"], "not an OpenSSH public key"),
        (["not a key at all"], "not an OpenSSH public key"),
    ],
)
def test_bad_sshkeys_are_input_errors(keys: list, problem: str) -> None:
    with pytest.raises(PveInputError, match=problem):
        vms.validate_sshkeys(keys)


def test_tags_and_hostpci_compare_by_meaning_not_text() -> None:
    assert vms.values_equal("tags", "lab-llm;gpu", "gpu;lab-llm")
    assert vms.values_equal("hostpci0", "mapping=rtx3090,pcie=1", "pcie=1,mapping=rtx3090")
    assert not vms.values_equal("hostpci0", "mapping=rtx3090,pcie=1,x-vga=1", "mapping=rtx3090,pcie=1")


def base_params(**overrides) -> dict:
    params = {
        "name": "gpu-1", "machine": "q35", "bios": "ovmf", "cores": 8, "sockets": 1, "numa": True,
        "memory": 32768, "onboot": True, "tags": ["gpu"], "cpu": "host", "cpu_hidden": False, "agent": True,
        "hotplug": None, "efidisk_storage": "local-lvm", "gpus": [{"mapping": "rtx3090", "pcie": True}],
        "network": None, "cloud_init": None,
    }  # fmt: skip
    params.update(overrides)
    return params


def test_desired_config_is_a_passthrough_vm_and_removes_surplus_gpus() -> None:
    current = {"hostpci0": "0000:01:00", "hostpci1": "0000:02:00", "hostpci2": "0000:03:00", "efidisk0": "x"}
    wanted, surplus = vms.desired_config(base_params(cpu_hidden=True), current, "lab-llm")
    assert wanted["machine"] == "q35"
    assert wanted["bios"] == "ovmf"
    assert wanted["balloon"] == 0
    assert wanted["cpu"] == "host,hidden=1"
    assert wanted["hostpci0"] == "mapping=rtx3090,pcie=1"
    assert wanted["tags"] == "gpu;lab-llm"
    assert "efidisk0" not in wanted  # already there
    assert surplus == ["hostpci1", "hostpci2"]


def test_options_that_need_a_restart() -> None:
    assert vms.needs_restart(["memory", "hostpci1", "name", "machine", "tags"]) == ["hostpci1", "machine"]


def test_disks_only_grow() -> None:
    config = {"scsi0": "ceph-vm:vm-101-disk-1,size=32G"}
    assert vms.disk_size_change(config, "scsi0", "64G") == "64G"
    assert vms.disk_size_change(config, "scsi0", "16G") is None
    with pytest.raises(PveInputError, match="scsi1 is not in the VM's config"):
        vms.disk_size_change(config, "scsi1", "64G")
