"""lab.llm.k8s_wait: watches until the operators' objects are ready, or times out naming what it saw."""

from __future__ import annotations

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
