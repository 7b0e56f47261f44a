"""playbooks/fit_plan.yml run by ansible-playbook: a plan as a fact, an early failure, a clean skip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.unit.serve.plan.plan_inputs import model_path

pytestmark = pytest.mark.playbook

PLAYBOOK = REPO_ROOT / "playbooks" / "fit_plan.yml"


def run_playbook(inventory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
    }
    playbook_binary = Path(sys.executable).parent / "ansible-playbook"
    return subprocess.run(
        [str(playbook_binary), "-i", str(inventory), str(PLAYBOOK), *extra],
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPO_ROOT,
        timeout=300,
        check=False,
    )


def task_results(output: str) -> dict[str, dict]:
    report = json.loads(output)
    return {task["task"]["name"]: task["hosts"]["localhost"] for task in report["plays"][0]["tasks"]}


def test_reference_lab_plan_is_set_as_a_fact() -> None:
    run = run_playbook(REPO_ROOT / "inventory" / "reference-lab")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    tasks = task_results(run.stdout)
    fit = tasks["Fit the model to the GPUs"]
    assert fit["changed"] is False
    assert fit["ansible_facts"]["lab_llm_fit_plan"]["layer_partition"] == [20, 20]
    assert tasks["Say why the stage is skipped"].get("skipped") is True


def test_a_model_that_does_not_fit_stops_the_run(tmp_path: Path) -> None:
    extra = {
        "lab_llm_model": {"config_path": str(model_path("mixtral-8x7b")), "weights": "bf16", "context_length": 32768}
    }
    variables = tmp_path / "mixtral.json"
    variables.write_text(json.dumps(extra))
    run = run_playbook(REPO_ROOT / "inventory" / "reference-lab", "-e", f"@{variables}")
    assert run.returncode == 2
    fit = task_results(run.stdout)["Fit the model to the GPUs"]
    assert fit["failed"] is True
    assert fit["suggestions"][0]["change"] == "weights_4bit"


def test_without_a_model_spec_the_stage_skips(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts: {}\n")
    run = run_playbook(inventory)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    tasks = task_results(run.stdout)
    assert tasks["Fit the model to the GPUs"].get("skipped") is True
    assert "nothing to fit" in tasks["Say why the stage is skipped"]["msg"]
