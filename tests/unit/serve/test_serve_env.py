"""The one-hop environment is set where Ray starts, the same everywhere: `lab-llm serve`, ray_node, the RayService."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.lab.llm.plugins.module_utils.k8s import rayservice
from lab_llm.serve_env import HAPROXY_PORTS, MAX_HAPROXY_DIR_CHARS, ONE_HOP_ENV, haproxy_env
from tests.conftest import REPO_ROOT

RAY_NODE = REPO_ROOT / "collections/ansible_collections/lab/llm/roles/ray_node"


def test_ray_node_and_the_rayservice_set_the_same_one_hop_switches() -> None:
    defaults = yaml.safe_load((RAY_NODE / "defaults/main.yml").read_text())
    assert defaults["ray_node_serve_environment"] == ONE_HOP_ENV
    assert rayservice.ONE_HOP_ENV == ONE_HOP_ENV
    assert {name: int(port) for name, port in defaults["ray_node_haproxy_ports"].items()} == HAPROXY_PORTS
    assert len(defaults["ray_node_haproxy_dir"]) <= MAX_HAPROXY_DIR_CHARS


def test_one_hop_switches_are_ray_serves_own_names() -> None:
    """Each variable is read by the installed Ray Serve (a typo would silently leave the Python proxy in place)."""
    constants = Path(__import__("ray.serve._private.constants", fromlist=["x"]).__file__).read_text()
    for name in [*ONE_HOP_ENV, *HAPROXY_PORTS, "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC", "RAY_SERVE_HAPROXY_SOCKET_PATH"]:
        assert f'"{name}"' in constants, name


def test_ray_serve_reads_the_switches_as_meant() -> None:
    """The installed Ray Serve, imported in a fresh process with the environment, has HAProxy and the throughput
    mode on and its controller's loop period at 0.5 s (a value Ray cannot parse would raise at import)."""
    probe = (
        "import json; from ray.serve._private import constants as c; print(json.dumps([c.RAY_SERVE_ENABLE_HA_PROXY, "
        "c.RAY_SERVE_THROUGHPUT_OPTIMIZED, c.CONTROL_LOOP_INTERVAL_S]))"
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("RAY_SERVE_")}
    run = subprocess.run(
        [sys.executable, "-c", probe], env={**env, **ONE_HOP_ENV}, capture_output=True, text=True, check=True
    )
    assert json.loads(run.stdout.splitlines()[-1]) == [True, True, 0.5]


def test_haproxy_files_and_ports_move_with_the_stack(tmp_path: Path) -> None:
    env = haproxy_env(Path("/tmp/lab-llm-x"), {"RAY_SERVE_HAPROXY_STATS_PORT": 18404})
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_CONTROL_LOOP_INTERVAL_S"] == "0.5"
    assert env["RAY_SERVE_HAPROXY_SOCKET_PATH"] == "/tmp/lab-llm-x/admin.sock"
    assert env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"] == "/tmp/lab-llm-x"
    assert env["RAY_SERVE_HAPROXY_STATS_PORT"] == "18404"
    with pytest.raises(ValueError, match="97"):
        haproxy_env(tmp_path / "a-directory-far-too-long-for-haproxy-sockets")
    with pytest.raises(ValueError, match="RAY_SERVE_NOPE"):
        haproxy_env(Path("/tmp/x"), {"RAY_SERVE_NOPE": 1})
