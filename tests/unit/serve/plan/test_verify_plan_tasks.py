"""roles/llm_app/tasks/verify_plan.yml run by ansible-playbook against a Ray dashboard and metrics agent on loopback.

The stand-in answers what the tasks read, in Ray 2.60's shapes: ``GET /nodes?view=summary`` gives
``{"result", "msg", "data": {"summary": [{"raylet": {...GcsNodeInfo fields, camelCase...}}]}}``
(ray/dashboard/modules/node/node_head.py ``get_all_nodes``, datacenter.py ``get_node_info``: the GcsNodeInfo of
src/ray/protobuf/gcs.proto merged under ``raylet``, enums as names), and each node's metrics agent serves Prometheus
text at ``/metrics`` on its ``metricsExportPort``.
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
from tests.unit.serve.plan.test_verify import RAY_METRICS

pytestmark = pytest.mark.playbook

TASKS = COLLECTION_ROOT / "roles" / "llm_app" / "tasks" / "verify_plan.yml"


@contextmanager
def serve(routes: dict[str, tuple[str, str]]) -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            content_type, body = routes.get(self.path, ("text/plain", ""))
            self.send_response(200 if self.path in routes else 404)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body.encode())))
            self.end_headers()
            self.wfile.write(body.encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def run_tasks(tmp_path: Path, planned_tokens: int | None) -> dict[str, dict]:
    with serve({"/metrics": ("text/plain; version=0.0.4", RAY_METRICS)}) as metrics_port:
        summary = {
            "result": True,
            "msg": "Node summary fetched.",
            "data": {
                "summary": [
                    {"hostname": "gpu-3090-1", "raylet": {"nodeManagerAddress": "127.0.0.1", "state": "ALIVE",
                                                          "metricsExportPort": metrics_port, "isHeadNode": True}},
                    {"hostname": "gone", "raylet": {"nodeManagerAddress": "127.0.0.2", "state": "DEAD",
                                                    "metricsExportPort": 1}},
                ]
            },
        }  # fmt: skip
        with serve({"/nodes?view=summary": ("application/json", json.dumps(summary))}) as dashboard_port:
            playbook = tmp_path / "verify.yml"
            playbook.write_text(
                "- name: Verify\n  hosts: localhost\n  connection: local\n  gather_facts: false\n  vars:\n"
                f"    llm_app_dashboard_url: http://127.0.0.1:{dashboard_port}\n"
                f"    llm_app_venv: {Path(sys.executable).parent.parent}\n"
                f"  tasks:\n    - name: The task file\n      ansible.builtin.include_tasks: {TASKS}\n"
            )
            extra = (
                []
                if planned_tokens is None
                else ["-e", json.dumps({"lab_llm_fit_plan": {"kv_cache_tokens": planned_tokens}})]
            )
            run = run_playbook_file(playbook, tmp_path, *extra)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return task_results(run.stdout)


def test_allocation_beside_the_plan_and_a_warning_beyond_five_percent(tmp_path: Path) -> None:
    tasks = run_tasks(tmp_path, 185952)
    read = tasks["Read each live node's metrics"]
    assert [item["item"]["raylet"]["state"] for item in read["results"]] == ["ALIVE"]  # the dead node is not asked
    report = tasks["Report the KV cache beside the plan"]["msg"]
    assert "vLLM allocated 143984 tokens (9000 blocks of 16), the fit plan predicted 185952 (-22.6 %)" in report
    warning = tasks["Warn when the KV cache is more than 5 % off the plan"]["msg"]
    assert warning.startswith("WARNING: vLLM allocated a KV cache of 143984 tokens")


def test_agreement_reports_without_a_warning(tmp_path: Path) -> None:
    tasks = run_tasks(tmp_path, 143000)
    assert "(+0.7 %)" in tasks["Report the KV cache beside the plan"]["msg"]
    assert tasks["Warn when the KV cache is more than 5 % off the plan"].get("skipped") is True


def test_without_a_fit_plan_nothing_is_read(tmp_path: Path) -> None:
    tasks = run_tasks(tmp_path, None)
    assert tasks["List the Ray nodes and their metrics ports"].get("skipped") is True
