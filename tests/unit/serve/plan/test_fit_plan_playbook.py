"""playbooks/fit_plan.yml run by ansible-playbook: a plan as a fact, an early failure, a clean skip."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.unit.serve.plan.plan_inputs import model_path

pytestmark = pytest.mark.playbook

PLAYBOOK = REPO_ROOT / "playbooks" / "fit_plan.yml"


def run_playbook(inventory: Path, *extra: str, playbook: Path = PLAYBOOK) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
    }
    playbook_binary = Path(sys.executable).parent / "ansible-playbook"
    return subprocess.run(
        [str(playbook_binary), "-i", str(inventory), str(playbook), *extra],
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPO_ROOT,
        timeout=300,
        check=False,
    )


def run_playbook_file(playbook: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Another playbook, on an inventory with nothing but the implicit localhost."""
    inventory = tmp_path / "empty-hosts.yml"
    inventory.write_text("all:\n  hosts: {}\n")
    return run_playbook(inventory, *extra, playbook=playbook)


def task_results(output: str, host: str | None = "localhost", role: str = "") -> dict[str, dict]:
    """The first play's task results by task name (without the `ROLE : ` prefix Ansible gives a role's tasks), each
    the result on `host`, or on every host by name when `host` is None."""
    report = json.loads(output)
    prefix = f"{role} : " if role else ""
    return {
        task["task"]["name"].removeprefix(prefix): task["hosts"] if host is None else task["hosts"][host]
        for task in report["plays"][0]["tasks"]
    }


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


def facts_inventory(tmp_path: Path, cards: dict[str, list[dict]]) -> Path:
    """The reference lab's hosts with Stage 1's lab_llm_gpus in host_vars (as a fact cache would give them), the
    model and limits from the reference lab, and a hand-written inventory that names only the network."""
    from tests.unit.serve.plan.plan_inputs import reference_lab_vars

    inventory = tmp_path / "inventory"
    (inventory / "host_vars").mkdir(parents=True)
    (inventory / "group_vars" / "all").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "inventory" / "reference-lab" / "hosts.yml", inventory / "hosts.yml")
    for host, gpus in cards.items():
        (inventory / "host_vars" / f"{host}.yml").write_text(yaml.safe_dump({"lab_llm_gpus": gpus}))
    variables = reference_lab_vars()
    variables["lab_llm_gpu_inventory"] = {"network": "10gbe"}
    (inventory / "group_vars" / "all" / "fit_plan.yml").write_text(yaml.safe_dump(variables))
    return inventory


def test_the_gpus_stage_1_found_are_planned_on(tmp_path: Path) -> None:
    from tests.unit.serve.plan.test_gpus import stage1_card

    cards = {"pve1": [stage1_card("2504", "0000:c1:00", audio="228e")]}
    cards.update({host: [stage1_card("2204")] for host in ("pve2", "pve3", "pve4")})
    run = run_playbook(facts_inventory(tmp_path, cards))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    fit = task_results(run.stdout)["Fit the model to the GPUs"]
    plan = fit["ansible_facts"]["lab_llm_fit_plan"]
    assert [gpu["node"] for stage in plan["stages"] for gpu in stage["gpus"]] == ["gpu-3090-1", "gpu-3090-2"]
    assert plan["layer_partition"] == [20, 20]
    assert fit["vllm_serve"].startswith("VLLM_PP_LAYER_PARTITION=20,20 vllm serve ")


def test_a_card_the_table_does_not_know_stops_the_run(tmp_path: Path) -> None:
    from tests.unit.serve.plan.test_gpus import stage1_card

    cards = {host: [stage1_card("2204")] for host in ("pve1", "pve2", "pve3")}
    cards["pve4"] = [stage1_card("2bff")]
    run = run_playbook(facts_inventory(tmp_path, cards))
    assert run.returncode == 2
    fit = task_results(run.stdout)["Fit the model to the GPUs"]
    assert "GPU 0000:01:00 of gpu-3090-3 (Proxmox node pve4): unknown NVIDIA GPU, PCI id 10de:2bff" in fit["msg"]
