"""The local deployment (`inventory/local`): Ray + vLLM + our app started once per test session by site.yml.

Starting the stack takes about a minute, so one session fixture runs the playbook in check mode, for real and
again (idempotence), records what each run said, and leaves the endpoint up for the API tests.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab_llm import tiny_model
from lab_llm.stack import StopReport, stop_stack
from tests.conftest import REPO_ROOT

RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


@dataclass
class PlaybookRun:
    returncode: int
    output: str

    def recap(self, host: str = "localhost") -> dict[str, int]:
        for match in RECAP.finditer(self.output):
            if match.group(1) == host:
                ok, changed, unreachable, failed = (int(match.group(i)) for i in range(2, 6))
                return {"ok": ok, "changed": changed, "unreachable": unreachable, "failed": failed}
        raise AssertionError(f"no PLAY RECAP line for {host} in:\n{self.output[-3000:]}")


@dataclass
class LocalDeployment:
    base_url: str
    state_dir: Path
    admin_password: str
    api_key: str
    model: str
    check_run: PlaybookRun
    first_run: PlaybookRun
    second_run: PlaybookRun

    @property
    def config_file(self) -> Path:
        return self.state_dir / "etc" / "app.yaml"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_site(env: dict[str, str], *extra: str) -> PlaybookRun:
    ansible_playbook = str(Path(sys.executable).parent / "ansible-playbook")
    command = [ansible_playbook, "playbooks/site.yml", "-i", "inventory/local", *extra]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1500, check=False)
    return PlaybookRun(done.returncode, done.stdout + done.stderr)


def stop_processes_of(state_dir: Path) -> StopReport:
    """Stop every process of this deployment's stack (`ray_node` marks them with its Ray temp dir), orphaned
    vLLM engine processes included: SIGTERM, then SIGKILL."""
    return stop_stack(str(state_dir / "ray"))


@pytest.fixture(scope="session")
def model_dir() -> Path:
    path = Path(os.environ.get("LAB_LLM_MODEL_DIR", Path.home() / ".cache/lab-llm/models/tiny-llama"))
    tiny_model.build(path)
    return path


@pytest.fixture(scope="session")
def local_deployment(model_dir: Path) -> Iterator[LocalDeployment]:
    # Short path: Ray puts unix sockets under it, and those are limited to about 107 characters.
    state_dir = Path(tempfile.mkdtemp(prefix="labllm-", dir="/tmp"))
    http_port = free_port()
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
        "ANSIBLE_FORCE_COLOR": "0",
        "LAB_LLM_STATE_DIR": str(state_dir),
        "LAB_LLM_MODEL_DIR": str(model_dir),
        "LAB_LLM_HTTP_PORT": str(http_port),
        "LAB_LLM_RAY_PORT": str(free_port()),
        "LAB_LLM_DASHBOARD_PORT": str(free_port()),
        # HAProxy's side ports (stats, Prometheus, the fallback proxy): per stack, as every other port here.
        **{
            name: str(free_port())
            for name in (
                "LAB_LLM_HAPROXY_STATS_PORT",
                "LAB_LLM_HAPROXY_METRICS_PORT",
                "LAB_LLM_FALLBACK_HTTP_PORT",
                "LAB_LLM_FALLBACK_GRPC_PORT",
            )
        },
    }
    try:
        check_run = run_site(env, "--check")
        first_run = run_site(env)
        assert first_run.returncode == 0, f"site.yml failed:\n{first_run.output[-6000:]}"
        second_run = run_site(env)
        yield LocalDeployment(
            base_url=f"http://127.0.0.1:{http_port}",
            state_dir=state_dir,
            admin_password=(state_dir / "secrets" / "admin-password").read_text().strip(),
            api_key=(state_dir / "secrets" / "demo-api-key").read_text().strip(),
            model="tiny-llama",
            check_run=check_run,
            first_run=first_run,
            second_run=second_run,
        )
    finally:
        stop_processes_of(state_dir)
