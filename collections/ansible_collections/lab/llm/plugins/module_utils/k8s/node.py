# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drain a Node as `kubectl drain` does: cordon it, evict its pods through the Eviction API (so PodDisruptionBudgets
hold), leave DaemonSet and mirror pods, and wait until the evicted pods are gone."""

from __future__ import annotations

import time
from typing import Any

from ansible_collections.lab.llm.plugins.module_utils.k8s.exceptions import K8sError, WaitTimeout
from ansible_collections.lab.llm.plugins.module_utils.k8s.service import K8sService

try:
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic.exceptions import DynamicApiError
except ImportError:  # reported by client.connect()
    ApiException = DynamicApiError = Exception  # type: ignore[misc,assignment]

_POLL_S = 1.0


def _evictable(pod: dict[str, Any]) -> bool:
    metadata = pod.get("metadata") or {}
    if "kubernetes.io/config.mirror" in (metadata.get("annotations") or {}):
        return False
    if any(owner.get("kind") == "DaemonSet" for owner in metadata.get("ownerReferences") or []):
        return False
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def pods_to_evict(service: K8sService, node_name: str) -> list[dict[str, Any]]:
    """The pods on the node that a drain evicts (not DaemonSet or mirror pods, not finished ones)."""
    pods = service.list("v1", "Pod", field_selector="spec.nodeName=%s" % node_name)
    return [pod for pod in pods if _evictable(pod)]


def drain(service: K8sService, node_name: str, timeout: float) -> list[str]:
    """Cordon and evict; returns the `namespace/name` of the pods evicted. No-op when the Node does not exist."""
    if service.get("v1", "Node", node_name) is None:
        return []
    service.apply(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node_name}, "spec": {"unschedulable": True}}
    )
    pods = pods_to_evict(service, node_name)
    evicted = ["%s/%s" % (p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods]
    if service.check_mode:
        return evicted
    deadline = time.monotonic() + timeout
    pending = list(pods)
    while pending:
        blocked = []
        for pod in pending:
            if not _evict(service, pod):
                blocked.append(pod)  # a PodDisruptionBudget says not now (HTTP 429): try again
        remaining = pods_to_evict(service, node_name)
        if not remaining:
            return evicted
        if time.monotonic() >= deadline:
            names = ", ".join("%s/%s" % (p["metadata"]["namespace"], p["metadata"]["name"]) for p in remaining)
            raise WaitTimeout(
                "drain did not finish after %ss; pods still on the node: %s" % (timeout, names),
                kind="Node",
                name=node_name,
            )
        pending = blocked or []
        time.sleep(_POLL_S)
    return evicted


def _evict(service: K8sService, pod: dict[str, Any]) -> bool:
    metadata = pod["metadata"]
    path = "/api/v1/namespaces/%s/pods/%s/eviction" % (metadata["namespace"], metadata["name"])
    body = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": metadata["name"], "namespace": metadata["namespace"]},
    }
    try:
        service.client.request("post", path, body=body)
    except (ApiException, DynamicApiError) as error:
        status = getattr(error, "status", None)
        if status == 404:
            return True
        if status == 429:
            return False
        raise K8sError(
            "eviction failed (HTTP %s): %s" % (status, getattr(error, "reason", error)),
            kind="Pod",
            name=metadata["name"],
            namespace=metadata["namespace"],
        ) from None
    return True
