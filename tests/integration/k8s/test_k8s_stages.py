"""Stages 4 and 6 as playbooks against the Kubernetes API stand-in, with tests playing CAPS and KubeRay:
adding one VM with --limit, every VM, the RayService with its smoke test, and second runs that change nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.standins.k8s import fixtures
from tests.standins.k8s.controllers import CAPS, RAY, play_caps, play_kuberay
from tests.standins.k8s.fixtures import run_playbook
from tests.standins.k8s.lab_llm_app import FakeLabLlm, running_app
from tests.standins.k8s.server import KubeApiStandIn

pytestmark = pytest.mark.playbook
kube_api = fixtures.kube_api
app = running_app


def run(*args: str) -> tuple[str, str]:
    """Stdout and the recap lines of a playbook run that must succeed."""
    result = run_playbook(*args)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout, "\n".join(line for line in result.stdout.splitlines() if "ok=" in line and "failed=" in line)


STAGE4 = [
    "playbooks/k8s_nodes.yml",
    "-i",
    "inventory/reference-lab",
    "-e",
    "deckhouse_node_wait_timeout=20",
    "-e",
    "vault_deckhouse_node_ssh_private_key=test-only-key",
]


def test_stage4_adds_one_vm_with_limit_then_all_and_reruns_change_nothing(kube_api: KubeApiStandIn) -> None:
    play_caps(kube_api)
    _, recap = run(*STAGE4, "--limit", "gpu-3090-1")
    assert "gpu-3090-1" in recap
    assert "changed=0" not in recap
    assert kube_api.names(CAPS, "StaticInstance") == ["gpu-3090-1"]
    assert kube_api.get("deckhouse.io/v1", "NodeGroup", "gpu-rtx-3090")["spec"]["staticInstances"]["count"] == 1

    _, recap = run(*STAGE4)
    assert kube_api.names(CAPS, "StaticInstance") == ["gpu-3060-1", "gpu-3090-1", "gpu-3090-2", "gpu-3090-3"]
    assert kube_api.get("deckhouse.io/v1", "NodeGroup", "gpu-rtx-3090")["spec"]["staticInstances"]["count"] == 3
    assert kube_api.get("deckhouse.io/v1", "NodeGroup", "gpu-rtx-3060")["spec"]["staticInstances"]["count"] == 1
    assert kube_api.names("v1", "Node") == ["gpu-3060-1", "gpu-3090-1", "gpu-3090-2", "gpu-3090-3"]

    _, recap = run(*STAGE4)
    assert recap.count("changed=0") == 4, recap


def test_stage6_applies_the_rayservice_waits_smoke_tests_and_reruns_change_nothing(
    kube_api: KubeApiStandIn, app: FakeLabLlm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    play_kuberay(kube_api)
    # The cluster from the inventory (lab_llm_kubeconfig), not the environment: the role's module_defaults for the
    # lab.llm.k8s action group must carry it to every Kubernetes task (Stage 4 above runs with the environment's).
    monkeypatch.delenv("K8S_AUTH_KUBECONFIG")
    signing_keys = tmp_path / "signing-keys.yaml"
    signing_keys.write_text("active_kid: k1\nkeys:\n  - {kid: k1, secret: test-only}\n")
    extra = {
        "lab_llm_kubernetes": True,
        "rayservice_image": "registry.lab.example/lab-llm/serve:0.1.0",
        "rayservice_engine": {"model": "/models/m", "served_model_name": "m", "tensor_parallel_size": 2},
        "rayservice_worker_groups": [{"gpu_class": "rtx-3090", "replicas": 2}],
        "rayservice_signing_keys_file": str(signing_keys),
        "rayservice_url": app.url,
        "rayservice_smoke_username": "admin",
        "rayservice_smoke_password": "s3cret",
        "rayservice_wait_timeout": 20,
        "lab_llm_kubeconfig": str(tmp_path / "kubeconfig"),
    }
    args = ["playbooks/rayservice.yml", "-i", "inventory/local", "-e", json.dumps(extra)]
    stdout, recap = run(*args)
    assert "changed=0" not in recap
    # The smoke test got a token and a chat completion from the (test double of the) endpoint.
    assert f"endpoint {app.url}/v1, model qwen2.5-32b" in stdout, stdout[-3000:]
    stored = kube_api.get(RAY, "RayService", "lab-llm", "lab-llm")
    assert stored["status"]["activeServiceStatus"]["applicationStatuses"]["llm"]["status"] == "RUNNING"
    assert kube_api.get("v1", "Secret", "lab-llm-signing-keys", "lab-llm") is not None
    assert kube_api.get("v1", "PersistentVolumeClaim", "lab-llm-auth", "lab-llm")["spec"]["accessModes"] == [
        "ReadWriteMany"
    ]
    assert "test-only" not in stdout  # the signing key never shows

    _, recap = run(*args)
    assert "changed=0" in recap, recap
