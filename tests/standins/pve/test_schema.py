"""The stand-in's parameter checks, straight from the API schema: what it accepts and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.standins.pve.schema import ApiSchema, ValidationFailed

CONFIG = "/nodes/{node}/qemu/{vmid}/config"


@pytest.fixture(scope="module")
def schema(shared_reference: Path) -> ApiSchema:
    return ApiSchema.load(shared_reference / "proxmox" / "pve-api-subset.json")


def check(schema: ApiSchema, method: str, path: str, **params) -> dict:
    endpoint, path_params = schema.match(method, path)
    raw = {name: value if isinstance(value, list) else [str(value)] for name, value in params.items()}
    for name, value in path_params.items():
        raw.setdefault(name, [value])
    return endpoint.validate(raw)


def refused(schema: ApiSchema, method: str, path: str, **params) -> dict:
    with pytest.raises(ValidationFailed) as failed:
        check(schema, method, path, **params)
    return failed.value.errors


def test_paths_match_templates(schema: ApiSchema) -> None:
    endpoint, found = schema.match("GET", "/nodes/pve2/tasks/UPID:pve2:0001:0002:0003:qmstart:101:root@pam:/status")
    assert endpoint.path == "/nodes/{node}/tasks/{upid}/status"
    assert found == {"node": "pve2", "upid": "UPID:pve2:0001:0002:0003:qmstart:101:root@pam:"}
    assert schema.match("PATCH", "/nodes/pve2/qemu/101/config") is None


def test_a_passthrough_config_is_accepted_and_typed(schema: ApiSchema) -> None:
    typed = check(
        schema, "PUT", "/nodes/pve2/qemu/101/config",
        hostpci0="mapping=rtx3090,pcie=1", hostpci1="0000:01:00.1,pcie=1,x-vga=1", machine="q35", bios="ovmf",
        cpu="host,hidden=1", numa="1", balloon="0", memory="65536", cores="12", onboot="true",
        net0="virtio=BC:24:11:00:00:65,bridge=vmbr0,tag=20", ipconfig0="ip=192.0.2.31/24,gw=192.0.2.1",
        efidisk0="ceph-vm:1,efitype=4m,pre-enrolled-keys=0", sshkeys="ssh-ed25519%20AAAA%20a%40b%0A",
        tags="gpu;lab-llm GPU", delete="hostpci2,hostpci3",
    )  # fmt: skip
    assert typed["vmid"] == 101
    assert typed["cores"] == 12
    assert typed["onboot"] == 1
    assert typed["hostpci1"] == "0000:01:00.1,pcie=1,x-vga=1"


@pytest.mark.parametrize(
    ("params", "param", "message"),
    [
        ({"hostpci0": "pcie=1"}, "hostpci0", "either 'host' or 'mapping' must be set"),
        ({"hostpci0": "mapping=rtx3090,host=01:00"}, "hostpci0", "either 'host' or 'mapping' must be set"),
        ({"hostpci0": "1:0"}, "hostpci0", "not look like a valid PCI id"),
        ({"hostpci0": "01:00,pcie=yes"}, "hostpci0", "pcie"),
        ({"hostpci16": "01:00"}, "hostpci16", "not defined in schema"),
        ({"cpu": "host,hiden=1"}, "cpu", "invalid key in comma-separated list property: hiden"),
        ({"net0": "virtio,bridge=vmbr0,tag=5000"}, "net0", "maximum value of 4094"),
        ({"net0": "bridge=vmbr0"}, "net0", "model: property is missing"),
        ({"ipconfig0": "ip=192.0.2.31,gw=192.0.2.1"}, "ipconfig0", "invalid IPv4 address/CIDR"),
        ({"ipconfig0": "ip=dhcp,gw=2001:db8::1"}, "ipconfig0", "invalid IPv4 gateway"),
        ({"sshkeys": "ssh-ed25519 AAAA a@b"}, "sshkeys", "invalid urlencoded string"),
        ({"bios": "uefi"}, "bios", "does not have a value in the enumeration 'seabios, ovmf'"),
        ({"balloon": "-1"}, "balloon", "minimum value of 0"),
        ({"numa": "maybe"}, "numa", "type check ('boolean') failed"),
        ({"delete": "hostpci0,9lives"}, "delete", "configuration ID"),
        ({"gpus": "1"}, "gpus", "does not allow additional properties"),
        ({"name": "gpu_3090"}, "name", "DNS name"),
    ],
)
def test_bad_config_parameters_are_refused_by_name(schema: ApiSchema, params: dict, param: str, message: str) -> None:
    errors = refused(schema, "PUT", "/nodes/pve2/qemu/101/config", **params)
    assert list(errors) == [param]
    assert message in errors[param]


def test_bad_input_outside_the_config(schema: ApiSchema) -> None:
    assert "vmid" in refused(schema, "POST", "/nodes/pve1/qemu/99/clone", newid="100")
    assert (
        refused(schema, "POST", "/nodes/pve1/qemu/9000/clone")["newid"] == "property is missing and it is not optional"
    )
    errors = refused(
        schema, "POST", "/cluster/mapping/pci", id="rtx3090", map=["node=pve2,path=0000:01:00,id=10de-2204"]
    )
    assert "map" in errors
    assert "map" in refused(schema, "POST", "/cluster/mapping/pci", id="rtx3090")
    assert "id" in refused(
        schema, "POST", "/cluster/mapping/pci", id="3090", map=["node=pve2,path=0000:01:00,id=10de:2204"]
    )
    accepted = check(schema, "POST", "/cluster/mapping/pci", id="rtx3090",
                     map=["node=pve2,path=0000:01:00,id=10de:2204,subsystem-id=1043:87b3,iommugroup=14"])  # fmt: skip
    assert accepted["map"] == ["node=pve2,path=0000:01:00,id=10de:2204,subsystem-id=1043:87b3,iommugroup=14"]
