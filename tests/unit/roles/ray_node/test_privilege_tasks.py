"""roles/ray_node/tasks/main.yml's first checks run by ansible-playbook: where systemd runs Ray the role needs root,
and says how to get it (-b or ansible_become) before it changes anything. The user is Ansible's `user_uid` fact,
given here as extra vars so the test does not depend on who runs it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from tests.unit.serve.plan.test_fit_plan_playbook import run_playbook, task_results

pytestmark = pytest.mark.playbook

ROOT_CHECK = "Check that the node is managed as root where systemd runs Ray"


def run_main(tmp_path: Path, uid: int, service_manager: str) -> tuple[int, dict[str, dict]]:
    inventory = tmp_path / "hosts.yml"
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory.write_text(yaml.safe_dump({"all": {"children": {"ray_head": {"hosts": {"head": local}}}}}))
    playbook = tmp_path / "main.yml"
    playbook.write_text(
        "- name: Ray node\n  hosts: head\n  gather_facts: false\n  tasks:\n    - name: The role\n"
        "      ansible.builtin.include_role:\n        name: lab.llm.ray_node\n"
    )
    extra = tmp_path / "vars.json"
    facts = {"user_uid": uid, "user_id": "ops" if uid else "root", "service_mgr": service_manager}
    extra.write_text(json.dumps({"ansible_facts": facts, "ray_node_accelerator": "cpu"}))
    # Check mode: nothing after the checks may change this machine, whatever the role reaches.
    run = run_playbook(inventory, "-e", f"@{extra}", "--check", playbook=playbook)
    return run.returncode, task_results(run.stdout, host="head", role="lab.llm.ray_node")


def test_systemd_as_another_user_fails_first_and_says_how_to_become_root(tmp_path: Path) -> None:
    status, tasks = run_main(tmp_path, uid=1000, service_manager="systemd")
    assert status != 0
    refusal = tasks[ROOT_CHECK]
    assert refusal["failed"] is True
    assert "needs root, but the play runs as ops (uid 1000)" in refusal["msg"]
    assert "with -b (--become), or set ansible_become: true" in refusal["msg"]
    assert "Check that the versions match the head's, before anything is changed" not in " ".join(tasks)


@pytest.mark.parametrize(("uid", "service_manager"), [(0, "systemd"), (1000, "sysvinit")])
def test_root_or_a_node_without_systemd_passes_the_check(tmp_path: Path, uid: int, service_manager: str) -> None:
    _, tasks = run_main(tmp_path, uid=uid, service_manager=service_manager)
    assert tasks[ROOT_CHECK].get("failed") is not True, tasks[ROOT_CHECK]
