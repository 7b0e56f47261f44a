"""inventory/reference-lab-ray, the reference lab on plain Ray, read by ansible-playbook as a user's run reads it:
Stage 3's plan (playbooks/fit_plan.yml, imported) and then, on every Ray host, the values ray_node and llm_app get.
Nothing connects to the hosts (set_fact runs on the controller)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab_llm.app.builder import to_llm_config
from lab_llm.config import parse_config
from tests.conftest import REPO_ROOT
from tests.unit.serve.plan.test_fit_plan_playbook import run_playbook

pytestmark = pytest.mark.playbook

INVENTORY = REPO_ROOT / "inventory" / "reference-lab-ray"
AUTH = {"store_path": "/a", "signing_keys_path": "/b"}


def resolve(tmp_path: Path, *, with_plan: bool = True) -> tuple[int, dict[str, Any], str]:
    probe: dict[str, Any] = {
        "name": "What the roles get",
        "hosts": "ray_head:ray_workers",
        "gather_facts": False,
        "tasks": [
            {
                "name": "Resolve",
                "ansible.builtin.set_fact": {
                    "resolved": {
                        "gpu_class": "{{ ray_node_gpu_class }}",
                        "accelerator": "{{ ray_node_accelerator }}",
                        "engine": "{{ llm_app_engine }}",
                        "serving": "{{ llm_app_serving }}",
                    }
                },
            }
        ],
    }
    plays = [{"ansible.builtin.import_playbook": str(REPO_ROOT / "playbooks" / "fit_plan.yml")}] if with_plan else []
    playbook = tmp_path / "probe.yml"
    playbook.write_text(yaml.safe_dump([*plays, probe], sort_keys=False))
    run = run_playbook(INVENTORY, playbook=playbook)
    report = json.loads(run.stdout)
    resolved = {
        host: result["ansible_facts"]["resolved"]
        for play in report["plays"]
        for task in play["tasks"]
        if task["task"]["name"] == "Resolve"
        for host, result in task["hosts"].items()
        if "ansible_facts" in result
    }
    return run.returncode, resolved, run.stdout


def test_every_stage_of_the_plan_finds_a_node_of_its_class(tmp_path: Path) -> None:
    status, resolved, output = resolve(tmp_path)
    assert status == 0, output[-3000:]
    assert set(resolved) == {"gpu-3060-1", "gpu-3090-1", "gpu-3090-2", "gpu-3090-3"}
    assert {host: values["gpu_class"] for host, values in resolved.items()} == {
        "gpu-3060-1": "rtx-3060",
        "gpu-3090-1": "rtx-3090",
        "gpu-3090-2": "rtx-3090",
        "gpu-3090-3": "rtx-3090",
    }
    head = resolved["gpu-3090-1"]
    bundles = head["serving"]["placement_bundles"]
    wanted = Counter(name for bundle in bundles for name in bundle if name not in ("CPU", "GPU"))
    advertised = Counter(values["gpu_class"] for values in resolved.values())  # one card per VM
    assert wanted and all(advertised[name] >= count for name, count in wanted.items()), (wanted, advertised)
    # The app the head deploys: the plan's layout with the model on the shared volume, valid as lab-llm reads it.
    engine = head["engine"]
    assert engine["model"] == "/models/Dolphin3.0-R1-Mistral-24B-AWQ"
    assert engine["tensor_parallel_size"] * engine["pipeline_parallel_size"] == len(bundles)
    llm = to_llm_config(parse_config({"engine": engine, "serving": head["serving"], "auth": AUTH}))
    assert [dict(bundle) for bundle in llm.placement_group_config["bundles"]] == [
        {key: float(value) for key, value in bundle.items()} for bundle in bundles
    ]


def test_without_the_plan_the_app_settings_say_which_playbook_to_run(tmp_path: Path) -> None:
    status, _, output = resolve(tmp_path, with_plan=False)
    assert status != 0
    assert "run playbooks/fit_plan.yml first, in the same ansible-playbook call" in output
