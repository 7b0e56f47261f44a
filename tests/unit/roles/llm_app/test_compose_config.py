"""The app configuration llm_app composes (roles/llm_app/tasks/main.yml, its task "Compose the app configuration and
the Serve deployment", run as it is written by ansible-playbook): with several engine replicas and nodes besides the
head, each gate reads its own copy of the auth store, so the admin API's key changes are switched off
(auth.admin_key_changes: false); otherwise the setting is left out, so the deployed args do not change."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.conftest import COLLECTION_ROOT
from tests.unit.serve.plan.test_fit_plan_playbook import run_playbook_file

pytestmark = pytest.mark.playbook

MAIN = COLLECTION_ROOT / "roles" / "llm_app" / "tasks" / "main.yml"
TASK = "Compose the app configuration and the Serve deployment"

CASES: dict[str, dict[str, Any]] = {
    "two replicas, a worker": {"llm_app_serving": {"num_replicas": 2}, "llm_app_model_nodes": ["localhost", "w1"]},
    "one replica, a worker": {"llm_app_serving": {}, "llm_app_model_nodes": ["localhost", "w1"]},
    "two replicas, the head only": {"llm_app_serving": {"num_replicas": 2}, "llm_app_model_nodes": ["localhost"]},
    "one replica, the user switched changes off": {
        "llm_app_serving": {"num_replicas": 1},
        "llm_app_model_nodes": ["localhost", "w1"],
        "llm_app_auth": {"admin_key_changes": False},
    },
}


@pytest.fixture(scope="module")
def composed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    tmp_path = tmp_path_factory.mktemp("compose")
    task = next(task for task in yaml.safe_load(MAIN.read_text()) if task.get("name") == TASK)
    (tmp_path / "compose.yml").write_text(yaml.safe_dump([task]))
    plays = [
        {
            "name": case,
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {"llm_app_engine": {"model": "/m"}, "llm_app_auth": {}, "llm_app_config_dir": "/etc/x", **values},
            "tasks": [{"name": "Compose", "ansible.builtin.include_tasks": str(tmp_path / "compose.yml")}],
        }
        for case, values in CASES.items()
    ]
    playbook = tmp_path / "playbook.yml"
    playbook.write_text(yaml.safe_dump(plays))
    run = run_playbook_file(playbook, tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    report = json.loads(run.stdout)
    return {
        play["play"]["name"]: next(
            task["hosts"]["localhost"]["ansible_facts"] for task in play["tasks"] if task["task"]["name"] == TASK
        )
        for play in report["plays"]
    }


def test_several_replicas_beside_the_head_switch_key_changes_off(composed: dict[str, dict[str, Any]]) -> None:
    facts = composed["two replicas, a worker"]
    assert facts["llm_app_config"]["auth"]["admin_key_changes"] is False
    assert facts["llm_app_gate_nodes"] == ["w1"]
    assert facts["llm_app_config"]["auth"]["store_path"] == "/etc/x/auth-store.yaml"


@pytest.mark.parametrize("case", ["one replica, a worker", "two replicas, the head only"])
def test_one_copy_per_gate_leaves_the_setting_out(composed: dict[str, dict[str, Any]], case: str) -> None:
    assert "admin_key_changes" not in composed[case]["llm_app_config"]["auth"]


def test_a_users_own_setting_is_kept(composed: dict[str, dict[str, Any]]) -> None:
    auth = composed["one replica, the user switched changes off"]["llm_app_config"]["auth"]
    assert auth["admin_key_changes"] is False
