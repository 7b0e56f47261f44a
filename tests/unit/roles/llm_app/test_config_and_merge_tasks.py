"""llm_app's tasks as ansible-playbook runs them on localhost with this checkout's lab-llm: a configuration lab-llm
refuses is refused before "Write the app configuration" replaces the running one, in check mode too
(roles/llm_app/tasks/main.yml); a copy of the auth store that cannot be merged stops the run with the CLI's error,
which names the node, never the store's text (roles/llm_app/tasks/gate_store_merge.yml)."""

from __future__ import annotations

import base64
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import COLLECTION_ROOT, REPO_ROOT
from tests.unit.serve.plan.test_fit_plan_playbook import run_playbook_file

pytestmark = pytest.mark.playbook

TASKS = COLLECTION_ROOT / "roles" / "llm_app" / "tasks"
VENV = Path(sys.executable).parent.parent
WRITE = [
    "Compose the app configuration and the Serve deployment",
    "Look for lab-llm on the head",
    "Validate the composed configuration before writing it",
    "Create the configuration directory",
    "Write the app configuration",
]


def tasks_named(path: Path, names: list[str]) -> list[dict[str, Any]]:
    tasks = {task.get("name"): task for task in yaml.safe_load(path.read_text())}
    return [tasks[name] for name in names]


def run(tmp_path: Path, tasks: list[dict[str, Any]], variables: dict[str, Any], *extra: str):
    play = {"hosts": "localhost", "connection": "local", "gather_facts": False, "vars": variables, "tasks": tasks}
    playbook = tmp_path / "playbook.yml"
    playbook.write_text(yaml.safe_dump([play]))
    return run_playbook_file(playbook, tmp_path, *extra)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "model"
    path.mkdir()
    shutil.copy(REPO_ROOT / "tests" / "fixtures" / "models" / "tiny-llama.json", path / "config.json")
    return path


@pytest.mark.parametrize("check_mode", [False, True])
def test_a_refused_configuration_changes_nothing(tmp_path: Path, model: Path, check_mode: bool) -> None:
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    running = config_dir / "app.yaml"
    running.write_text("engine: {model: /the/running/one}\n")
    variables = {
        "llm_app_venv": str(VENV),
        "llm_app_config_dir": str(config_dir),
        "llm_app_engine": {"model": str(model), "env": {"VLLM_HOST_IP": "10.0.0.5"}},
        "llm_app_serving": {},
        "llm_app_auth": {},
        "llm_app_model_nodes": ["localhost"],
    }
    refused = run(tmp_path, tasks_named(TASKS / "main.yml", WRITE), variables, *(["--check"] if check_mode else []))
    assert refused.returncode != 0
    assert "engine.env" in refused.stdout, refused.stdout[-3000:]
    assert running.read_text() == "engine: {model: /the/running/one}\n"
    variables["llm_app_engine"] = {"model": str(model)}
    accepted = run(tmp_path, tasks_named(TASKS / "main.yml", WRITE), variables)
    assert accepted.returncode == 0, accepted.stdout[-3000:]
    assert yaml.safe_load(running.read_text())["engine"]["model"] == str(model)


def test_a_copy_that_cannot_be_merged_is_named_by_its_node(tmp_path: Path) -> None:
    config = tmp_path / "app.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "engine": {"model": "/m"},
                "auth": {"store_path": str(tmp_path / "store.yaml"), "signing_keys_path": str(tmp_path / "k.yaml")},
            }
        )
    )
    copies = {
        "w1": "users: {}\n",
        "w2": "users: {admin: {role: admin, password_hash: $argon2id$hash-text}}\napi_keys: 5\n",
    }
    variables = {
        "llm_app_venv": str(VENV),
        "llm_app_config_file": str(config),
        "llm_app_gate_store_copies": {
            "results": [
                {"item": {"item": node}, "content": base64.b64encode(text.encode()).decode()}
                for node, text in copies.items()
            ]
        },
    }
    names = [
        "Merge their API keys and revocations into the head's copy",
        "Stop when a copy of the auth store cannot be merged",
    ]
    result = run(tmp_path, tasks_named(TASKS / "gate_store_merge.yml", names), variables)
    assert result.returncode != 0
    report = json.loads(result.stdout)
    failed = report["plays"][0]["tasks"][-1]["hosts"]["localhost"]
    assert "copy w2: store: `api_keys` must be a list of mappings, not a number" in failed["msg"]
    assert "hash-text" not in result.stdout
    assert not (tmp_path / "store.yaml").exists()
