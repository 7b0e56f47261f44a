"""roles/ray_node/tasks/gpu_class.yml and the start command it feeds: how many units of ray_node_gpu_class a node
advertises. A stand-in `nvidia-smi` on PATH answers as the real one does for `--query-gpu=index
--format=csv,noheader` (one index per line, nvidia-smi's documented CSV query output)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import COLLECTION_ROOT
from tests.unit.serve.plan.test_fit_plan_playbook import run_playbook_file, task_results

pytestmark = pytest.mark.playbook

START_COMMAND = COLLECTION_ROOT / "roles" / "ray_node" / "templates" / "start_command.j2"


def run_gpu_class(tmp_path: Path, gpus: int | None, **variables: Any) -> tuple[int, dict[str, dict]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if gpus is not None:
        fake = bin_dir / "nvidia-smi"
        fake.write_text("#!/bin/sh\n" + "".join(f"echo {index}\n" for index in range(gpus)))
        fake.chmod(0o755)
    path = f"{bin_dir}:/usr/bin:/bin"
    playbook = tmp_path / "gpu.yml"
    playbook.write_text(
        f"- name: GPU class\n  hosts: localhost\n  connection: local\n  gather_facts: false\n"
        f"  environment: {{PATH: '{path}'}}\n"
        "  vars:\n    ray_node_role: worker\n    ray_node_head_join_address: 10.0.0.1\n"
        "    ray_node_cluster_address: 10.0.0.2\n"
        "  tasks:\n    - name: The task file\n      ansible.builtin.include_role:\n        name: lab.llm.ray_node\n"
        "        tasks_from: gpu_class.yml\n        public: true\n"
        "    - name: Render the start command\n      ansible.builtin.debug:\n"
        f"        msg: \"{{{{ lookup('ansible.builtin.template', '{START_COMMAND}') | from_yaml }}}}\"\n"
    )
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps({"ansible_python_interpreter": sys.executable, **variables}))
    run = run_playbook_file(playbook, tmp_path, "-e", f"@{extra}")
    tasks = task_results(run.stdout, role="lab.llm.ray_node")
    return run.returncode, tasks


def advertised(tasks: dict[str, dict]) -> dict[str, float]:
    command = tasks["Render the start command"]["msg"]
    return json.loads(next(arg for arg in command if arg.startswith("--resources=")).removeprefix("--resources="))


def test_a_gpu_node_advertises_one_unit_per_card_it_has(tmp_path: Path) -> None:
    status, tasks = run_gpu_class(tmp_path, 2, ray_node_accelerator="gpu", ray_node_gpu_class="rtx-3090")
    assert status == 0, tasks
    assert advertised(tasks) == {"rtx-3090": 2}


def test_a_set_gpu_count_wins(tmp_path: Path) -> None:
    status, tasks = run_gpu_class(
        tmp_path, 2, ray_node_accelerator="gpu", ray_node_gpu_class="rtx-3090", ray_node_num_gpus=1
    )
    assert status == 0
    assert advertised(tasks) == {"rtx-3090": 1}
    assert tasks["Count the node's GPUs for its class resource"].get("skipped") is True


def test_a_gpu_node_whose_cards_cannot_be_counted_is_refused(tmp_path: Path) -> None:
    status, tasks = run_gpu_class(tmp_path, None, ray_node_accelerator="gpu", ray_node_gpu_class="rtx-3090")
    assert status != 0
    message = tasks["Refuse a GPU class whose GPUs cannot be counted"]["msg"]
    assert "ray_node_gpu_class rtx-3090 is advertised with one unit per GPU, but nvidia-smi lists none" in message
    assert "set ray_node_num_gpus" in message


def test_a_cpu_node_advertises_its_class_once(tmp_path: Path) -> None:
    status, tasks = run_gpu_class(tmp_path, None, ray_node_accelerator="cpu", ray_node_gpu_class="cpu-worker")
    assert status == 0
    assert advertised(tasks) == {"cpu-worker": 1}


def test_no_class_no_resource(tmp_path: Path) -> None:
    status, tasks = run_gpu_class(tmp_path, 2, ray_node_accelerator="gpu", ray_node_resources={"ssd": 1})
    assert status == 0
    assert advertised(tasks) == {"ssd": 1}
    assert os.path.exists(tmp_path / "bin" / "nvidia-smi")
