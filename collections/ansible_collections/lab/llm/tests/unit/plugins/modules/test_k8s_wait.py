"""lab.llm.k8s_wait: watches until the operators' objects are ready, or times out naming what it saw."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ansible_collections.lab.llm.plugins.modules import k8s_wait
from tests.module_runner import run_module
from tests.standins.k8s import fixtures
from tests.standins.k8s.fixtures import later
from tests.standins.k8s.server import KubeApiStandIn

kube_api = fixtures.kube_api

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "kuberay-operator", "namespace": "kuberay-system"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "kuberay"}},
        "template": {
            "metadata": {"labels": {"app": "kuberay"}},
            "spec": {"containers": [{"name": "operator", "image": "kuberay/operator:v1.5.1"}]},
        },
    },
}


def test_deployment_becomes_available(kube_api: KubeApiStandIn) -> None:
    kube_api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kuberay-system"}})
    kube_api.put(DEPLOYMENT)
    later(
        0.3,
        lambda: kube_api.set_status(
            "apps/v1",
            "Deployment",
            "kuberay-operator",
            {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1},
            "kuberay-system",
        ),
    )
    result = run_module(
        k8s_wait.main,
        dict(condition="deployment_available", name="kuberay-operator", namespace="kuberay-system", timeout=5),
    )
    assert not result.get("failed"), result
    assert result["state"] == "1/1 replicas available, 1 updated"


def test_gpu_capacity_timeout_names_the_node_and_its_capacity(kube_api: KubeApiStandIn) -> None:
    kube_api.put(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gpu-3090-1"}, "status": {"capacity": {"cpu": "16"}}}
    )
    result = run_module(k8s_wait.main, dict(condition="node_gpus", name="gpu-3090-1", timeout=1))
    assert result["failed"] is True
    assert result["msg"] == "Node gpu-3090-1: not ready after 1s; last seen: capacity nvidia.com/gpu=0"


def test_cluster_policy_ready_after_the_operator_reports_it(kube_api: KubeApiStandIn) -> None:
    kube_api.put(
        {
            "apiVersion": "nvidia.com/v1",
            "kind": "ClusterPolicy",
            "metadata": {"name": "cluster-policy"},
            "spec": {"driver": {"enabled": False}},
            "status": {"state": "notReady"},
        }
    )
    later(0.3, lambda: kube_api.set_status("nvidia.com/v1", "ClusterPolicy", "cluster-policy", {"state": "ready"}))
    result = run_module(k8s_wait.main, dict(condition="cluster_policy_ready", name="cluster-policy", timeout=5))
    assert not result.get("failed"), result
    assert result["state"] == "state ready"


def test_check_mode_does_not_wait_and_says_what_a_run_would_wait_for(kube_api: KubeApiStandIn) -> None:
    """As kubernetes.core.k8s skips its wait in check mode: one read, no watch, not failed for a missing object."""
    result = run_module(
        k8s_wait.main, dict(condition="node_gpus", name="gpu-3090-1", gpus=2, timeout=3), check_mode=True
    )
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert result["ready"] is False
    assert result["state"] == "Node not registered yet"
    assert result["msg"] == (
        "check mode, not waited: a real run waits up to 3s for Node gpu-3090-1 (node_gpus); "
        "now: Node not registered yet"
    )
    assert not [path for _method, path in kube_api.requests if "watch=" in path], kube_api.requests


def test_check_mode_reports_an_object_that_is_already_ready(kube_api: KubeApiStandIn) -> None:
    kube_api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kuberay-system"}})
    kube_api.put(DEPLOYMENT)
    kube_api.set_status(
        "apps/v1",
        "Deployment",
        "kuberay-operator",
        {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1},
        "kuberay-system",
    )
    args = dict(condition="deployment_available", name="kuberay-operator", namespace="kuberay-system", timeout=30)
    result = run_module(k8s_wait.main, args, check_mode=True)
    assert result["ready"] is True, result
    assert result["msg"].endswith(
        "for Deployment kuberay-system/kuberay-operator (deployment_available); now: 1/1 replicas available, 1 updated"
    ), result
    assert not [path for _method, path in kube_api.requests if "watch=" in path], kube_api.requests


def test_a_missing_kubeconfig_is_named_with_its_context_and_no_credential(tmp_path: Path) -> None:
    missing = tmp_path / "clusters" / "lab.yaml"
    result = run_module(
        k8s_wait.main,
        dict(condition="node_ready", name="n1", kubeconfig=str(missing), context="lab-admin", api_key="sekret-api-key"),
    )
    assert result["failed"] is True
    assert result["msg"] == "kubeconfig %s, context lab-admin: the file does not exist" % missing
    assert "sekret-api-key" not in json.dumps(result)
