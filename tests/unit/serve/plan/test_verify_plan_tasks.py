"""roles/llm_app/tasks/verify_plan.yml run by ansible-playbook against a Ray dashboard stand-in on loopback.

The stand-in answers what the tasks read, in the shapes Ray 2.60 gave on the local stack (checked against a running
one): ``GET /api/serve/applications/`` (ServeInstanceDetails: ``applications.<app>.deployments.<name>.replicas[]``
with ``replica_id``, ``state``, ``actor_id``, ``node_id``, ``node_ip``; ray/serve/schema.py ``ReplicaDetails``) and
``GET /api/v0/logs/file?actor_id=...&suffix=out&lines=...`` (the replica's stdout as text, what ``ray logs`` reads;
ray/util/state/api.py ``get_log``), where vLLM's engine logs "GPU KV cache size: N tokens".
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import COLLECTION_ROOT
from tests.unit.serve.plan.test_fit_plan_playbook import run_playbook_file, task_results
from tests.unit.serve.plan.test_verify import LOG

pytestmark = pytest.mark.playbook

TASKS = COLLECTION_ROOT / "roles" / "llm_app" / "tasks" / "verify_plan.yml"


@contextmanager
def serve(routes: dict[str, tuple[str, str]]) -> Iterator[tuple[int, list[str]]]:
    requested: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            requested.append(self.path)
            content_type, body = routes.get(self.path, ("text/plain", ""))
            self.send_response(200 if self.path in routes else 404)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body.encode())))
            self.end_headers()
            self.wfile.write(body.encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], requested
    finally:
        server.shutdown()
        server.server_close()


def replica(name: str, actor_id: str, state: str = "RUNNING") -> dict[str, object]:
    return {"replica_id": name, "state": state, "actor_id": actor_id, "node_id": "31db92", "node_ip": "10.0.0.31",
            "pid": 23625, "log_file_path": f"/serve/replica_lab-llm_{name}.log"}  # fmt: skip


def run_tasks(tmp_path: Path, planned_tokens: int | None) -> tuple[dict[str, dict], list[str]]:
    applications = {
        "applications": {
            "lab-llm": {
                "status": "RUNNING",
                "deployments": {
                    "LLMServer:dolphin3": {"replicas": [replica("engine", "a1"), replica("old", "a0", "STOPPING")]},
                    "ProxyAnchor": {"replicas": [replica("anchor", "b1")]},
                },
            }
        }
    }
    routes = {
        "/api/serve/applications/": ("application/json", json.dumps(applications)),
        "/api/v0/logs/file?actor_id=a1&suffix=out&lines=100000": ("text/plain", "INFO starting\n" + LOG),
    }
    with serve(routes) as (dashboard_port, requested):
        playbook = tmp_path / "verify.yml"
        playbook.write_text(
            "- name: Verify\n  hosts: localhost\n  connection: local\n  gather_facts: false\n  vars:\n"
            f"    llm_app_dashboard_url: http://127.0.0.1:{dashboard_port}\n    llm_app_name: lab-llm\n"
            f"    llm_app_venv: {Path(sys.executable).parent.parent}\n"
            f"  tasks:\n    - name: The task file\n      ansible.builtin.include_tasks: {TASKS}\n"
        )
        plan = (
            []
            if planned_tokens is None
            else ["-e", json.dumps({"lab_llm_fit_plan": {"kv_cache_tokens": planned_tokens}})]
        )
        run = run_playbook_file(playbook, tmp_path, *plan)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return task_results(run.stdout), requested


def test_allocation_beside_the_plan_and_a_warning_beyond_five_percent(tmp_path: Path) -> None:
    tasks, requested = run_tasks(tmp_path, 200000)
    # Only the running engine replica's output is read, not another deployment's or a stopping replica's.
    assert [path for path in requested if path.startswith("/api/v0/logs")] == [
        "/api/v0/logs/file?actor_id=a1&suffix=out&lines=100000"
    ]
    report = tasks["Report the KV cache beside the plan"]["msg"]
    assert "vLLM allocated 185952 tokens (11623 blocks of 16, from its log), the fit plan predicted 200000" in report
    assert "(-7.0 %)" in report
    warning = tasks["Warn when the KV cache is more than 5 % off the plan"]["msg"]
    assert warning.startswith("WARNING: vLLM allocated a KV cache of 185952 tokens (11623 blocks of 16)")


def test_agreement_reports_without_a_warning(tmp_path: Path) -> None:
    tasks, _ = run_tasks(tmp_path, 185952)
    assert "(+0.0 %)" in tasks["Report the KV cache beside the plan"]["msg"]
    assert tasks["Warn when the KV cache is more than 5 % off the plan"].get("skipped") is True


def test_without_a_fit_plan_nothing_is_read(tmp_path: Path) -> None:
    tasks, requested = run_tasks(tmp_path, None)
    assert tasks["List the engine replicas of the application"].get("skipped") is True
    assert requested == []
