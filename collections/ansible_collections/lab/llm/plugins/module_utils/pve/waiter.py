# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waiting on Proxmox: tasks (UPIDs), VM locks, the QEMU guest agent. One function per kind of readiness."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from ansible_collections.lab.llm.plugins.module_utils.pve.client import PveClient
from ansible_collections.lab.llm.plugins.module_utils.pve.exceptions import PveApiError, PveError, PveTaskError

LOG_TAIL_LINES = 10
FIRST_POLL = 0.1  # most API tasks (config, start) finish in well under a second; long ones back off


def _pauses(longest: float) -> Iterator[float]:
    """Poll intervals: 0.1 s, growing by half each time, up to ``longest``."""
    pause = FIRST_POLL
    while True:
        yield min(pause, longest)
        pause *= 1.5


def upid_node(upid: str) -> str:
    """``UPID:node:pid:pstart:starttime:type:id:user:`` -> node (where the task status lives)."""
    parts = upid.split(":")
    if len(parts) < 8 or parts[0] != "UPID":
        raise PveError("not a Proxmox task id (UPID): %r" % upid)
    return parts[1]


def wait_for_task(client: PveClient, upid: str, timeout: float = 600, interval: float = 2.0) -> dict[str, Any]:
    """Poll /nodes/{node}/tasks/{upid}/status until ``stopped``; raise PveTaskError unless exitstatus is OK."""
    node = upid_node(upid)
    path = "nodes/%s/tasks/%s/status" % (node, upid)
    deadline = time.monotonic() + timeout
    pauses = _pauses(interval)
    while True:
        status = client.get(path)
        if status.get("status") == "stopped":
            exitstatus = status.get("exitstatus", "")
            if exitstatus != "OK":
                raise PveTaskError(node, upid, exitstatus or "unknown", task_log_tail(client, node, upid))
            return status
        if time.monotonic() > deadline:
            raise PveTaskError(node, upid, "still running after %ss" % timeout, task_log_tail(client, node, upid))
        time.sleep(next(pauses))


def task_log_tail(client: PveClient, node: str, upid: str) -> list[str]:
    """The last lines of a task's log, for error messages; empty when the log cannot be read."""
    try:
        lines = client.get("nodes/%s/tasks/%s/log" % (node, upid), limit=1000)
    except PveError:
        return []
    return [line.get("t", "") for line in lines[-LOG_TAIL_LINES:]]


def wait_for_unlock(
    client: PveClient, node: str, vmid: int, timeout: float = 600, interval: float = 2.0
) -> dict[str, Any]:
    """Wait until the VM's config has no ``lock`` (clone, migrate, backup...); return that config."""
    deadline = time.monotonic() + timeout
    pauses = _pauses(interval)
    while True:
        config = client.get("nodes/%s/qemu/%s/config" % (node, vmid))
        if "lock" not in config:
            return config
        if time.monotonic() > deadline:
            raise PveError("VM %s on node %s is still locked (%s) after %ss" % (vmid, node, config["lock"], timeout))
        time.sleep(next(pauses))


def wait_for_agent(
    client: PveClient, node: str, vmid: int, timeout: float = 300, interval: float = 2.0
) -> list[dict[str, Any]]:
    """Wait until the QEMU guest agent answers, then return the guest's interfaces (network-get-interfaces)."""
    base = "nodes/%s/qemu/%s/agent" % (node, vmid)
    deadline = time.monotonic() + timeout
    pauses = _pauses(interval)
    while True:
        try:
            client.post(base + "/ping")
            return client.get(base + "/network-get-interfaces").get("result", [])
        except PveApiError as exc:
            # 500 "QEMU guest agent is not running" until the guest has booted and started the agent.
            if exc.status < 500 or time.monotonic() > deadline:
                raise PveError(
                    "QEMU guest agent of VM %s on node %s did not answer within %ss: %s" % (vmid, node, timeout, exc)
                ) from None
        time.sleep(next(pauses))


def guest_addresses(interfaces: list) -> list:
    """IPv4 then IPv6 addresses of the guest; the loopback interface and link-local addresses left out."""
    ipv4, ipv6 = [], []
    for interface in interfaces:
        if interface.get("name") == "lo":
            continue
        for address in interface.get("ip-addresses", []):
            text = address.get("ip-address", "")
            if address.get("ip-address-type") == "ipv4":
                ipv4.append(text)
            elif address.get("ip-address-type") == "ipv6" and not text.lower().startswith("fe80"):
                ipv6.append(text)
    return ipv4 + ipv6
