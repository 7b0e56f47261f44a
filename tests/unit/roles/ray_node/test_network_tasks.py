"""roles/ray_node/tasks/network.yml run by ansible-playbook on this machine: which address the node announces
(Ray's --node-ip-address, VLLM_HOST_IP) and which interface carries Gloo and NCCL, for each kind of ansible_host.

The machine's own interfaces are the input (loopback holds 127.0.0.1 and ::1; the default route's interface holds the
address Ansible reports as default_ipv4), so the tests need no network of their own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lab_llm.serve_env import ONE_HOP_ENV
from tests.unit.serve.plan.test_fit_plan_playbook import run_playbook_file, task_results

pytestmark = pytest.mark.playbook


def run_network_tasks(tmp_path: Path, **variables: Any) -> tuple[int, dict[str, dict]]:
    playbook = tmp_path / "network.yml"
    playbook.write_text(
        "- name: Network\n  hosts: localhost\n  connection: local\n  gather_facts: true\n  gather_subset: [network]\n"
        "  tasks:\n    - name: The task file\n      ansible.builtin.include_role:\n        name: lab.llm.ray_node\n"
        "        tasks_from: network.yml\n"
    )
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(variables))
    run = run_playbook_file(playbook, tmp_path, "-e", f"@{extra}")
    tasks = task_results(run.stdout, role="lab.llm.ray_node")
    return run.returncode, tasks


def facts_of(tasks: dict[str, dict]) -> dict[str, Any]:
    return {
        **tasks["Find the node's cluster address"]["ansible_facts"],
        **tasks["Pick the interface that holds the cluster address"]["ansible_facts"],
        **tasks["Compose the environment of the Ray processes"]["ansible_facts"],
    }


def default_route(tasks: dict[str, dict]) -> dict[str, Any]:
    return tasks["Gathering Facts"]["ansible_facts"]["ansible_default_ipv4"]


def test_an_ipv4_ansible_host_is_the_address_and_its_interface_carries_gloo(tmp_path: Path) -> None:
    status, tasks = run_network_tasks(tmp_path, ansible_host="127.0.0.1")
    assert status == 0
    facts = facts_of(tasks)
    assert facts["ray_node_cluster_address"] == "127.0.0.1"
    assert facts["ray_node_cluster_address_source"] == "ansible_host"
    assert facts["ray_node_cluster_ifname"] == "lo"
    environment = facts["ray_node_process_environment"]
    assert (environment["VLLM_HOST_IP"], environment["GLOO_SOCKET_IFNAME"]) == ("127.0.0.1", "lo")
    # The Serve switches reach the environment Ray starts with (the one-hop path, the controller's loop period).
    assert {name: environment.get(name) for name in ONE_HOP_ENV} == ONE_HOP_ENV
    assert (
        "cluster address 127.0.0.1 (from ansible_host) on interface lo"
        in tasks["Say which address and interface the node uses between nodes"]["msg"]
    )


def test_a_host_name_takes_the_default_route_and_says_so(tmp_path: Path) -> None:
    status, tasks = run_network_tasks(tmp_path, ansible_host="gpu-3090-1.lab.example")
    route = default_route(tasks)
    if not route.get("address"):
        pytest.skip("this machine has no default IPv4 route")
    assert status == 0
    facts = facts_of(tasks)
    assert facts["ray_node_cluster_address"] == route["address"]
    assert facts["ray_node_cluster_ifname"] == route["interface"]
    message = tasks["Say which address and interface the node uses between nodes"]["msg"]
    assert f"cluster address {route['address']} (from the default route, as ansible_host" in message
    assert "'gpu-3090-1.lab.example' is a host name" in message


def test_an_ipv6_ansible_host_is_refused_unless_the_address_is_given(tmp_path: Path) -> None:
    status, tasks = run_network_tasks(tmp_path, ansible_host="fd00::30")
    assert status != 0
    refusal = tasks["Refuse an IPv6 ansible_host without ray_node_ip_address"]
    assert refusal["failed"] is True
    assert "ansible_host 'fd00::30' is an IPv6 address; set ray_node_ip_address" in refusal["msg"]
    assert "Find the node's cluster address" not in tasks  # refused before anything is derived


def test_a_given_address_wins_and_an_ipv6_one_finds_its_interface(tmp_path: Path) -> None:
    status, tasks = run_network_tasks(tmp_path, ansible_host="fd00::30", ray_node_ip_address="::1")
    assert status == 0
    facts = facts_of(tasks)
    assert (facts["ray_node_cluster_address"], facts["ray_node_cluster_address_source"]) == (
        "::1",
        "ray_node_ip_address",
    )
    assert facts["ray_node_cluster_ifname"] == "lo"


def test_an_address_no_interface_holds_is_refused(tmp_path: Path) -> None:
    status, tasks = run_network_tasks(tmp_path, ansible_host="198.51.100.7")
    assert status != 0
    refusal = tasks["Refuse a node whose cluster interface cannot be found"]
    assert "no network interface holds the cluster address '198.51.100.7' (from ansible_host)" in refusal["msg"]


def test_a_named_interface_carries_gloo_and_nccl(tmp_path: Path) -> None:
    status, tasks = run_network_tasks(tmp_path, ansible_host="127.0.0.1", ray_node_socket_ifname="lo")
    assert status == 0
    environment = facts_of(tasks)["ray_node_process_environment"]
    assert (environment["GLOO_SOCKET_IFNAME"], environment["NCCL_SOCKET_IFNAME"]) == ("lo", "lo")


@pytest.mark.parametrize(
    ("ifname", "unknown"), [("ens18", "ens18"), ("lo, eth-nope", "eth-nope"), ("^docker", "^docker")]
)
def test_an_interface_the_node_does_not_have_is_refused_before_anything_is_composed(
    tmp_path: Path, ifname: str, unknown: str
) -> None:
    status, tasks = run_network_tasks(tmp_path, ansible_host="127.0.0.1", ray_node_socket_ifname=ifname)
    assert status != 0
    refusal = tasks["Refuse a ray_node_socket_ifname that names no interface of the node"]
    assert f"names {unknown}, which this node does not have (its interfaces: " in refusal["msg"]
    assert "lo" in refusal["msg"].split("its interfaces:")[1]
    assert "Compose the environment of the Ray processes" not in tasks
