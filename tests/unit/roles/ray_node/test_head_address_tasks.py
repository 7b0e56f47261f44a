"""roles/ray_node/tasks/network.yml run by ansible-playbook on this machine for a head and a worker (both local):
which address a worker joins the head at (Ray's --address). The head's cluster address, as the head chose it, not its
management ansible_host; IPv6 in brackets; in a run without the head, the head's inventory; else a clear failure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.unit.serve.plan.test_fit_plan_playbook import run_playbook, task_results

pytestmark = pytest.mark.playbook


def run_two_nodes(tmp_path: Path, head: dict[str, Any], *extra: str) -> tuple[int, dict[str, dict]]:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        json.dumps(
            {
                "all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
                "ray_head": {"hosts": {"head": head}},
                "ray_workers": {"hosts": {"worker": {"ansible_host": "127.0.0.1"}}},
            }
        )
    )
    playbook = tmp_path / "network.yml"
    playbook.write_text(
        "- name: Network\n  hosts: ray_head:ray_workers\n  gather_facts: true\n  gather_subset: [network]\n"
        "  tasks:\n    - name: The task file\n      ansible.builtin.include_role:\n        name: lab.llm.ray_node\n"
        "        tasks_from: network.yml\n"
    )
    run = run_playbook(inventory, *extra, playbook=playbook)
    tasks = task_results(run.stdout, host=None, role="lab.llm.ray_node")
    return run.returncode, tasks


def joins(tasks: dict[str, dict]) -> str:
    return tasks["Find the head's address"]["worker"]["ansible_facts"]["ray_node_head_join_address"]


def test_a_worker_joins_the_head_at_its_cluster_address_not_its_ansible_host(tmp_path: Path) -> None:
    # The head is managed at 192.0.2.30 and talks to the cluster on 127.0.0.1 (its "10GbE" address).
    status, tasks = run_two_nodes(tmp_path, {"ansible_host": "192.0.2.30", "ray_node_ip_address": "127.0.0.1"})
    assert status == 0
    assert joins(tasks) == "127.0.0.1"


def test_a_head_known_by_name_is_joined_at_the_address_it_chose(tmp_path: Path) -> None:
    status, tasks = run_two_nodes(tmp_path, {"ansible_host": "head.lab.example"})
    route = tasks["Gathering Facts"]["head"]["ansible_facts"]["ansible_default_ipv4"]
    if not route.get("address"):
        pytest.skip("this machine has no default IPv4 route")
    assert status == 0
    assert joins(tasks) == route["address"]


def test_an_ipv6_head_address_is_bracketed(tmp_path: Path) -> None:
    status, tasks = run_two_nodes(tmp_path, {"ansible_host": "127.0.0.1", "ray_node_ip_address": "::1"})
    if "::1" not in json.dumps(tasks["Gathering Facts"]["head"]["ansible_facts"].get("ansible_lo", {})):
        pytest.skip("this machine's loopback has no ::1")
    assert status == 0
    assert joins(tasks) == "[::1]"


def test_an_explicit_head_address_wins(tmp_path: Path) -> None:
    status, tasks = run_two_nodes(tmp_path, {"ansible_host": "127.0.0.1"}, "-e", "ray_node_head_address=fd00::30")
    assert status == 0
    assert joins(tasks) == "[fd00::30]"


def test_without_the_head_the_worker_takes_the_heads_inventory_address(tmp_path: Path) -> None:
    status, tasks = run_two_nodes(
        tmp_path, {"ansible_host": "192.0.2.30", "ray_node_ip_address": "127.0.0.2"}, "--limit", "worker"
    )
    assert status == 0
    assert joins(tasks) == "127.0.0.2"


def test_without_the_head_and_its_address_the_worker_fails_clearly(tmp_path: Path) -> None:
    status, tasks = run_two_nodes(tmp_path, {"ansible_host": "head.lab.example"}, "--limit", "worker")
    assert status != 0
    message = tasks["Refuse a worker that does not know the head's address"]["worker"]["msg"]
    assert "the address of the head head is not known" in message
    assert "set ray_node_head_address" in message
