"""module_utils/pve: property strings, the wanted VM config and its diff, and the client and waiter
against the Proxmox API stand-in (HTTPS, schema-checked)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest

from ansible_collections.lab.llm.plugins.module_utils.pve import propstring
from ansible_collections.lab.llm.plugins.module_utils.pve import vm as vms
from ansible_collections.lab.llm.plugins.module_utils.pve.client import PveClient
from ansible_collections.lab.llm.plugins.module_utils.pve.exceptions import (
    PveApiError,
    PveError,
    PveInputError,
    PveTaskError,
)
from ansible_collections.lab.llm.plugins.module_utils.pve.waiter import guest_addresses, upid_node, wait_for_task
from tests.standins.pve.scenario import TEMPLATE_VMID, connection_args, running_standin

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINYDR9JYyyug5eZrmtUx/hWRntaWghRo5xo+3YWnD3+Q admin@lab"


@pytest.fixture(scope="module")
def pve(shared_reference: Path, tmp_path_factory: pytest.TempPathFactory):
    with running_standin(shared_reference, tmp_path_factory.mktemp("pve")) as standin:
        yield standin


def client_for(standin, **overrides) -> PveClient:
    params = dict(api_password=None, validate_certs=True, api_retries=1, **connection_args(standin))
    params.update(overrides)
    return PveClient.from_params(params)


# -- property strings --------------------------------------------------------------------------------
def test_property_string_round_trip_keeps_the_default_key_bare() -> None:
    values = propstring.parse("0000:01:00,pcie=1,x-vga=1", "host")
    assert values == {"host": "0000:01:00", "pcie": "1", "x-vga": "1"}
    assert propstring.render(values, "host") == "0000:01:00,pcie=1,x-vga=1"


def test_net_model_given_as_mac_alias_compares_equal_to_model_and_bridge() -> None:
    assert vms.values_equal("net0", "virtio=BC:24:11:00:00:65,bridge=vmbr0,firewall=1", "virtio,bridge=vmbr0")
    assert not vms.values_equal("net0", "virtio=BC:24:11:00:00:65,bridge=vmbr1", "virtio,bridge=vmbr0")


def test_sshkeys_are_url_encoded_with_percent_20_and_decode_back() -> None:
    encoded = propstring.encode_sshkeys([KEY, KEY.replace("admin", "ops")])
    assert " " not in encoded
    assert "+" not in encoded
    assert "%20" in encoded
    assert "%0A" in encoded
    assert propstring.decode_sshkeys(encoded) == [KEY, KEY.replace("admin", "ops")]
    assert unquote(encoded).endswith("\n")


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


def test_upid_and_guest_addresses() -> None:
    assert upid_node("UPID:pve2:00001234:00005678:6B075A3C:qmclone:9000:root@pam:") == "pve2"
    with pytest.raises(PveError, match="not a Proxmox task id"):
        upid_node("12345")
    interfaces = [
        {"name": "lo", "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4"}]},
        {"name": "eth0", "ip-addresses": [{"ip-address": "fe80::1", "ip-address-type": "ipv6"},
                                          {"ip-address": "2001:db8::5", "ip-address-type": "ipv6"},
                                          {"ip-address": "192.0.2.31", "ip-address-type": "ipv4"}]},
    ]  # fmt: skip
    assert guest_addresses(interfaces) == ["192.0.2.31", "2001:db8::5"]


# -- the client against the stand-in -----------------------------------------------------------------
def test_token_auth_over_verified_tls(pve) -> None:
    client = client_for(pve)
    assert client.get("version")["release"] == "8.4"
    assert sorted(node["node"] for node in client.get("nodes")) == ["pve1", "pve2", "pve3", "pve4"]


def test_ticket_auth_with_csrf_token_for_writes(pve) -> None:
    pve.users["root@pam"]["password"] = "lab-password"
    client = client_for(pve, api_user="root@pam", api_token_id=None, api_token_secret=None, api_password="lab-password")
    assert client.get("cluster/nextid")
    client.post("cluster/mapping/pci", id="ticket-test", map=["node=pve1,path=0000:01:00,id=10de:2504"])
    assert pve.cluster.mappings["ticket-test"]["map"] == ["node=pve1,path=0000:01:00,id=10de:2504"]
    with pytest.raises(PveError, match="authentication as root@pam"):
        client_for(pve, api_user="root@pam", api_token_id=None, api_token_secret=None, api_password="wrong")


def test_wrong_token_is_401_and_a_token_without_privilege_is_403(pve) -> None:
    with pytest.raises(PveApiError) as wrong:
        client_for(pve, api_token_secret="0" * 32).get("nodes")
    assert wrong.value.status == 401
    secret = pve.add_token("audit@pve", "ro", {"VM.Audit", "Sys.Audit"})
    reader = client_for(pve, api_user="audit@pve", api_token_id="ro", api_token_secret=secret)
    assert reader.get("cluster/resources", type="vm")
    with pytest.raises(PveApiError) as refused:
        reader.post(f"nodes/pve1/qemu/{TEMPLATE_VMID}/clone", newid=4242)
    assert refused.value.status == 403
    assert "Permission check failed (/vms/9000, VM.Clone)" in str(refused.value)


def test_tls_is_verified_by_default(pve) -> None:
    with pytest.raises(PveError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        client_for(pve, ca_path=None).get("version")


def test_schema_errors_name_the_parameter(pve) -> None:
    client = client_for(pve)
    with pytest.raises(PveApiError) as failed:
        client.put(f"nodes/pve1/qemu/{TEMPLATE_VMID}/config", hostpci0="0000:01:00,speed=fast", bogus=1)
    assert failed.value.status == 400
    assert set(failed.value.errors) == {"hostpci0", "bogus"}
    assert "does not allow additional properties" in failed.value.errors["bogus"]
    assert "bogus" in str(failed.value)
    assert "hostpci0" in str(failed.value)


def test_failed_task_raises_with_exit_status_and_log_tail(pve) -> None:
    client = client_for(pve)
    pve.cluster.fail_next_task("qmclone", "clone failed: rbd error: No space left on device")
    upid = client.post(f"nodes/pve1/qemu/{TEMPLATE_VMID}/clone", newid=4100, name="doomed", full=1)
    assert upid.startswith("UPID:pve1:")
    assert ":qmclone:9000:ansible@pve!lab:"  # a token task runs as the token id in upid
    with pytest.raises(PveTaskError) as failed:
        wait_for_task(client, upid, timeout=10, interval=0.05)
    assert failed.value.exitstatus == "clone failed: rbd error: No space left on device"
    assert "TASK ERROR: clone failed" in failed.value.log_tail[-1]
    assert 4100 not in pve.cluster.vms  # Proxmox removes the half-made clone


class FlakyApi:
    """A proxmoxer-like object whose first GETs fail with 500."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, path: str):
        return self

    def get(self, **params):
        from proxmoxer.core import ResourceException

        self.calls += 1
        if self.calls <= self.failures:
            raise ResourceException(500, "Internal Server Error", "cfs-lock timeout")
        return {"ok": True}

    def post(self, **params):
        from proxmoxer.core import ResourceException

        self.calls += 1
        raise ResourceException(500, "Internal Server Error", "cfs-lock timeout")


def test_reads_are_retried_on_5xx_and_writes_are_not() -> None:
    flaky = FlakyApi(failures=2)
    assert PveClient(flaky, retries=3, retry_delay=0).get("nodes") == {"ok": True}
    assert flaky.calls == 3
    writer = FlakyApi(failures=0)
    with pytest.raises(PveApiError, match="HTTP 500: cfs-lock timeout"):
        PveClient(writer, retries=3, retry_delay=0).post("nodes/pve1/qemu/100/clone")
    assert writer.calls == 1


class UnreachableApi:
    """A proxmoxer-like object whose first calls fail before or while connecting."""

    def __init__(self, error: Exception, failures: int) -> None:
        self.error = error
        self.failures = failures
        self.calls = 0

    def __call__(self, path: str):
        return self

    def _answer(self, **params):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "UPID:pve1:0001:0002:0003:qmstart:100:ansible@pve:"

    get = post = _answer


def test_connection_errors_are_retried_for_reads_and_for_writes_that_never_connected() -> None:
    import requests

    reader = UnreachableApi(requests.exceptions.ConnectionError("connection reset"), failures=1)
    assert PveClient(reader, retries=2, retry_delay=0).get("nodes").startswith("UPID:")
    assert reader.calls == 2
    never_sent = UnreachableApi(requests.exceptions.ConnectTimeout("connect timeout"), failures=1)
    assert PveClient(never_sent, retries=2, retry_delay=0).post("nodes/pve1/qemu/100/status/start")
    assert never_sent.calls == 2
    maybe_sent = UnreachableApi(requests.exceptions.ConnectionError("connection reset"), failures=1)
    with pytest.raises(PveError, match="POST nodes/pve1/qemu/100/status/start: no answer from the Proxmox API"):
        PveClient(maybe_sent, retries=2, retry_delay=0).post("nodes/pve1/qemu/100/status/start")
    assert maybe_sent.calls == 1
