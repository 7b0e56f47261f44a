"""pytest fixtures around the stand-in; test modules import them by name (`from ... import kube_api`)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tests.standins.k8s.server import KubeApiStandIn

CRD_DIR = Path(__file__).parent / "crds"
KUBERAY_CRDS = ("ray.io_rayservices.yaml", "ray.io_rayclusters.yaml")

# Sample objects for the tests that talk to the stand-in.
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab-llm"}}


def deployment(replicas: int = 1, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "lab-llm", "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
        },
    }


@pytest.fixture
def kube_api(shared_reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeApiStandIn]:
    """A running stand-in with the Deckhouse, GPU Operator and KubeRay CRDs, K8S_AUTH_KUBECONFIG pointing at it."""
    crds = sorted(CRD_DIR.glob("*.yaml")) + [shared_reference / "crds" / name for name in KUBERAY_CRDS]
    api = KubeApiStandIn(crds).start()
    monkeypatch.setenv("K8S_AUTH_KUBECONFIG", str(api.kubeconfig(tmp_path / "kubeconfig")))
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kubernetes discovery cache goes to the temp dir
    try:
        yield api
    finally:
        api.stop()


def later(delay: float, action: Callable[[], None]) -> threading.Timer:
    """Play a controller: do `action` after `delay` seconds, in the background."""
    timer = threading.Timer(delay, action)
    timer.daemon = True
    timer.start()
    return timer


def run_playbook(*args: str) -> subprocess.CompletedProcess[str]:
    """ansible-playbook from the repository root with its ansible.cfg (and K8S_AUTH_KUBECONFIG, when set)."""
    command = [str(Path(sys.executable).parent / "ansible-playbook"), *args]
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
