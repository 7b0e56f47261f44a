"""module_utils/pve/waiter.py: task ids, guest agent addresses, and waiting for a task against the Proxmox API
stand-in (HTTPS, schema-checked)."""

from __future__ import annotations

import pytest

from ansible_collections.lab.llm.plugins.module_utils.pve.exceptions import (
    PveError,
    PveTaskError,
)
from ansible_collections.lab.llm.plugins.module_utils.pve.waiter import guest_addresses, upid_node, wait_for_task
from tests.standins.pve.scenario import TEMPLATE_VMID


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


def test_failed_task_raises_with_exit_status_and_log_tail(pve, client_for) -> None:
    client = client_for()
    pve.cluster.fail_next_task("qmclone", "clone failed: rbd error: No space left on device")
    upid = client.post(f"nodes/pve1/qemu/{TEMPLATE_VMID}/clone", newid=4100, name="doomed", full=1)
    assert upid.startswith("UPID:pve1:")
    assert f":qmclone:{TEMPLATE_VMID}:ansible@pve!lab:" in upid  # a clone task names its source; a token task its token
    with pytest.raises(PveTaskError) as failed:
        wait_for_task(client, upid, timeout=10, interval=0.05)
    assert failed.value.exitstatus == "clone failed: rbd error: No space left on device"
    assert "TASK ERROR: clone failed" in failed.value.log_tail[-1]
    assert 4100 not in pve.cluster.vms  # Proxmox removes the half-made clone
