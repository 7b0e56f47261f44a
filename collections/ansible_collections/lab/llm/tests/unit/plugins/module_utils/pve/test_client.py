"""module_utils/pve/client.py: authentication, TLS, schema errors and retries, against the Proxmox API stand-in
(HTTPS, schema-checked) and failing APIs."""

from __future__ import annotations

import pytest

from ansible_collections.lab.llm.plugins.module_utils.pve.client import PveClient
from ansible_collections.lab.llm.plugins.module_utils.pve.exceptions import (
    PveApiError,
    PveError,
)
from tests.standins.pve.scenario import TEMPLATE_VMID


def test_token_auth_over_verified_tls(pve, client_for) -> None:
    client = client_for()
    assert client.get("version")["release"] == "8.4"
    assert sorted(node["node"] for node in client.get("nodes")) == ["pve1", "pve2", "pve3", "pve4"]


def test_ticket_auth_with_csrf_token_for_writes(pve, client_for) -> None:
    pve.users["root@pam"]["password"] = "lab-password"
    client = client_for(api_user="root@pam", api_token_id=None, api_token_secret=None, api_password="lab-password")
    assert client.get("cluster/nextid")
    client.post("cluster/mapping/pci", id="ticket-test", map=["node=pve1,path=0000:01:00,id=10de:2504"])
    assert pve.cluster.mappings["ticket-test"]["map"] == ["node=pve1,path=0000:01:00,id=10de:2504"]
    with pytest.raises(PveError, match="authentication as root@pam"):
        client_for(api_user="root@pam", api_token_id=None, api_token_secret=None, api_password="wrong")


def test_wrong_token_is_401_and_a_token_without_privilege_is_403(pve, client_for) -> None:
    with pytest.raises(PveApiError) as wrong:
        client_for(api_token_secret="0" * 32).get("nodes")
    assert wrong.value.status == 401
    secret = pve.add_token("audit@pve", "ro", {"VM.Audit", "Sys.Audit"})
    reader = client_for(api_user="audit@pve", api_token_id="ro", api_token_secret=secret)
    assert reader.get("cluster/resources", type="vm")
    with pytest.raises(PveApiError) as refused:
        reader.post(f"nodes/pve1/qemu/{TEMPLATE_VMID}/clone", newid=4242)
    assert refused.value.status == 403
    assert "Permission check failed (/vms/9000, VM.Clone)" in str(refused.value)


def test_tls_is_verified_by_default(pve, client_for) -> None:
    with pytest.raises(PveError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        client_for(ca_path=None).get("version")


def test_schema_errors_name_the_parameter(pve, client_for) -> None:
    client = client_for()
    with pytest.raises(PveApiError) as failed:
        client.put(f"nodes/pve1/qemu/{TEMPLATE_VMID}/config", hostpci0="0000:01:00,speed=fast", bogus=1)
    assert failed.value.status == 400
    assert set(failed.value.errors) == {"hostpci0", "bogus"}
    assert "does not allow additional properties" in failed.value.errors["bogus"]
    assert "bogus" in str(failed.value)
    assert "hostpci0" in str(failed.value)


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
