"""module_utils/k8s/waiter.py against the Kubernetes API stand-in: following the watch, deletion as a state, an
expired resourceVersion (410 Gone); the named conditions of lab.llm.k8s_wait."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ansible_collections.lab.llm.plugins.module_utils.k8s import service, waiter
from ansible_collections.lab.llm.plugins.module_utils.k8s.exceptions import WaitFailed, WaitTimeout
from tests.standins.k8s.fixtures import NAMESPACE, deployment, later
from tests.standins.k8s.server import KubeApiStandIn


def deployment_becomes_available(kube_api: KubeApiStandIn, after_s: float) -> None:
    """The stand-in reports the `web` Deployment available `after_s` seconds from now."""
    status = {"observedGeneration": 1, "availableReplicas": 1, "updatedReplicas": 1}
    later(after_s, lambda: kube_api.set_status("apps/v1", "Deployment", "web", status, "lab-llm"))


def test_waiter_follows_the_watch_and_reports_deletion_as_state(
    kube_api: KubeApiStandIn, k8s: service.K8sService
) -> None:
    k8s.apply(NAMESPACE)
    k8s.apply(deployment())
    deployment_becomes_available(kube_api, after_s=0.2)
    started = time.monotonic()
    waiter.wait_for(k8s, "apps/v1", "Deployment", "web", "lab-llm", waiter.deployment_available, 5)
    assert time.monotonic() - started < 3  # woken by the watch event, not by the deadline

    def gone(obj: dict[str, Any] | None) -> tuple[bool, str | None, str]:
        return False, ("deleted" if obj is None else None), "present"

    later(0.2, lambda: k8s.delete("apps/v1", "Deployment", "web", "lab-llm"))
    with pytest.raises(WaitFailed, match="Deployment lab-llm/web: deleted"):
        waiter.wait_for(k8s, "apps/v1", "Deployment", "web", "lab-llm", gone, 5)
    with pytest.raises(WaitTimeout, match="not ready after 1s; last seen: Deployment not created yet"):
        waiter.wait_for(k8s, "apps/v1", "Deployment", "web", "lab-llm", waiter.deployment_available, 1)


def test_waiter_survives_an_expired_resource_version(kube_api: KubeApiStandIn, k8s: service.K8sService) -> None:
    k8s.apply(NAMESPACE)
    k8s.apply(deployment())
    kube_api.compacted_rv = 10**6  # every watch from the object's resourceVersion answers 410 Gone
    deployment_becomes_available(kube_api, after_s=0.8)
    obj = waiter.wait_for(k8s, "apps/v1", "Deployment", "web", "lab-llm", waiter.deployment_available, 5)
    assert obj["status"]["availableReplicas"] == 1
    watches = [path for method, path in kube_api.requests if "watch=" in path]
    assert 1 < len(watches) < 20  # it watched again after each 410, without spinning


def test_named_conditions_watch_their_kind_with_the_modules_options(k8s: service.K8sService) -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gpu-1"}, "status": {"capacity": {}}}
    node["status"]["capacity"]["nvidia.com/gpu"] = "1"
    two_gpus = waiter.CONDITIONS["node_gpus"].predicate({"gpus": 2})
    assert two_gpus(node) == (False, None, "capacity nvidia.com/gpu=1")
    assert waiter.CONDITIONS["node_gpus"].predicate({"gpus": 1})(node)[0] is True
    assert {name: (c.api_version, c.kind, c.namespaced) for name, c in waiter.CONDITIONS.items()} == {
        "node_ready": ("v1", "Node", False),
        "node_gpus": ("v1", "Node", False),
        "deployment_available": ("apps/v1", "Deployment", True),
        "cluster_policy_ready": ("nvidia.com/v1", "ClusterPolicy", False),
    }
    # Each condition names a kind the API serves, namespaced as it says (the stand-in has the GPU Operator's CRD).
    for condition in waiter.CONDITIONS.values():
        assert k8s.resource(condition.api_version, condition.kind).namespaced is condition.namespaced
