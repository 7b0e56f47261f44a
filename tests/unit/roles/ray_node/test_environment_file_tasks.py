"""roles/ray_node's systemd files rendered by ansible-playbook on this machine: the node's environment (which may hold
RAY_AUTH_TOKEN) goes into a root-only EnvironmentFile, escaped per systemd.exec(5), and never into the unit (which
is world-readable and shown in --diff).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.unit.serve.plan.test_fit_plan_playbook import run_playbook_file

pytestmark = pytest.mark.playbook

ROLE = Path(__file__).resolve().parents[4] / "collections/ansible_collections/lab/llm/roles/ray_node"
TOKEN = 's3cr3t-%h-"ray"-$HOME-\\n-token'


def render(tmp_path: Path) -> tuple[str, str]:
    playbook = tmp_path / "render.yml"
    playbook.write_text(
        "- name: Render\n  hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
        f"    - name: Unit\n      ansible.builtin.template:\n        src: {ROLE}/templates/ray.service.j2\n"
        f"        dest: {tmp_path}/ray.service\n        mode: '0644'\n"
        f"    - name: Environment\n      ansible.builtin.template:\n        src: {ROLE}/templates/ray.env.j2\n"
        f"        dest: {tmp_path}/ray.env\n        mode: '0600'\n"
    )
    variables = {
        "ray_node_role": "head",
        "ray_node_start_command": ["/opt/lab-llm/venv/bin/ray", "start", "--head"],
        "ray_node_stop_grace_s": 10,
        "ray_node_environment_file": "/etc/lab-llm/ray/ray-head.env",
        "ray_node_process_environment": {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN, "VLLM_HOST_IP": "10.0.0.1"},
    }
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(variables))
    run = run_playbook_file(playbook, tmp_path, "-e", f"@{extra}")
    assert run.returncode == 0, run.stdout[-2000:]
    return (tmp_path / "ray.service").read_text(), (tmp_path / "ray.env").read_text()


def test_the_token_is_in_the_environment_file_escaped_and_not_in_the_unit(tmp_path: Path) -> None:
    unit, environment = render(tmp_path)
    assert "s3cr3t" not in unit
    assert "Environment=" not in unit.replace("EnvironmentFile=", "")
    assert "EnvironmentFile=/etc/lab-llm/ray/ray-head.env\n" in unit
    # Double quotes; a backslash before \ " ` $ stands for that character (systemd.exec(5), EnvironmentFile=).
    assert 'RAY_AUTH_TOKEN="s3cr3t-%h-\\"ray\\"-\\$HOME-\\\\n-token"\n' in environment
    assert 'VLLM_HOST_IP="10.0.0.1"\n' in environment


def test_process_mode_hands_ray_the_exact_values_from_the_file(tmp_path: Path) -> None:
    """The shell wrapper start_process.yml runs ray under reads the same file back to the same values."""
    render(tmp_path)
    facts = yaml.safe_load((ROLE / "tasks/start_process.yml").read_text())[0]["ansible.builtin.set_fact"]
    wrapper = facts["ray_node_with_environment"]
    child = [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]
    run = subprocess.run([*wrapper, str(tmp_path / "ray.env"), *child], capture_output=True, text=True, check=True)
    seen = json.loads(run.stdout)
    assert seen["RAY_AUTH_TOKEN"] == TOKEN
    assert (seen["RAY_AUTH_MODE"], seen["VLLM_HOST_IP"]) == ("token", "10.0.0.1")
    assert "s3cr3t" not in " ".join(wrapper)


def test_the_environment_file_is_written_owner_only_without_diff_or_log() -> None:
    written = yaml.safe_load((ROLE / "tasks/environment_file.yml").read_text())[0]
    assert written["ansible.builtin.template"]["mode"] == "0600"
    assert (written["no_log"], written["diff"]) == (True, False)
    systemd = (ROLE / "tasks/start_systemd.yml").read_text()
    assert "ray_node_environment_written.changed" in systemd
    process = yaml.safe_load((ROLE / "tasks/start_process.yml").read_text())
    assert not [task["name"] for task in process if "environment" in task]
