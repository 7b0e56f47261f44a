# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Wait for an object to reach a state by watching it, with a deadline; one predicate per kind of readiness.

A predicate takes the object (a dict, or None while it does not exist) and returns (done, failure, state):
`done` ends the wait, `failure` (a message) ends it with an error, `state` says where the object is now.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

from ansible_collections.lab.llm.plugins.module_utils.k8s.deckhouse import static_instance_phase
from ansible_collections.lab.llm.plugins.module_utils.k8s.exceptions import K8sError, WaitFailed, WaitTimeout
from ansible_collections.lab.llm.plugins.module_utils.k8s.service import K8sService

try:
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic.exceptions import DynamicApiError
except ImportError:  # reported by client.connect()
    ApiException = DynamicApiError = Exception  # type: ignore[misc,assignment]


_MIN_WATCH_S = 0.5

# A Kubernetes object as a dict (None while it does not exist) -> (done, failure message or None, state seen).
# (typing's spelling: an alias is evaluated when the module loads, on every Python a module may run on.)
Predicate = Callable[[Optional[Dict[str, Any]]], Tuple[bool, Optional[str], str]]


def wait_for(
    service: K8sService,
    api_version: str,
    kind: str,
    name: str,
    namespace: str | None,
    predicate: Predicate,
    timeout: float,
) -> dict[str, Any] | None:
    """Watch one object until predicate says done; raise WaitFailed / WaitTimeout naming its last state."""
    resource = service.resource(api_version, kind)
    deadline = time.monotonic() + timeout
    obj = service.get(api_version, kind, name, namespace)
    state = "not found"
    while True:
        done, failure, state = predicate(obj)
        if failure:
            raise WaitFailed(failure, kind=kind, name=name, namespace=namespace)
        if done:
            return obj
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        started = time.monotonic()
        obj = _watch_once(service, resource, obj, name, namespace, predicate, remaining, deadline)
        if time.monotonic() - started < _MIN_WATCH_S:
            time.sleep(_MIN_WATCH_S)  # a stream that ends at once (410 Gone, proxy) must not become a busy loop
    raise WaitTimeout(
        "not ready after %ss; last seen: %s" % (timeout, state), kind=kind, name=name, namespace=namespace
    )


def look_once(
    service: K8sService,
    api_version: str,
    kind: str,
    name: str,
    namespace: str | None,
    predicate: Predicate,
) -> tuple[bool, str | None, str]:
    """One read, no wait (check mode): (done, failure or None, state) of the object as it is now; `not found` when
    it does not exist (yet). K8sError when the cluster does not serve the kind."""
    service.resource(api_version, kind)
    return predicate(service.get(api_version, kind, name, namespace))


def _watch_once(
    service: K8sService,
    resource: Any,
    obj: dict[str, Any] | None,
    name: str,
    namespace: str | None,
    predicate: Predicate,
    remaining: float,
    deadline: float,
) -> dict[str, Any] | None:
    """Follow one watch stream; return the object as last seen (read afresh when the stream just ended)."""
    resource_version = (obj or {}).get("metadata", {}).get("resourceVersion")
    try:
        for event in service.client.watch(
            resource,
            namespace=namespace,
            field_selector="metadata.name=%s" % name,
            resource_version=resource_version,
            timeout=max(1, int(remaining + 0.999)),
        ):
            if event["type"] == "ERROR":  # e.g. 410 Gone sent in the stream: start over from a fresh read
                break
            obj = None if event["type"] == "DELETED" else event["raw_object"]
            done, failure, _state = predicate(obj)
            if done or failure or time.monotonic() >= deadline:
                return obj
    except (ApiException, DynamicApiError) as error:
        if getattr(error, "status", None) != 410:  # 410 Gone: the resourceVersion expired, read afresh
            raise K8sError(
                "watch failed (HTTP %s): %s" % (getattr(error, "status", "?"), error),
                kind=resource.kind,
                name=name,
                namespace=namespace,
            ) from None
    return service.get(resource.group_version, resource.kind, name, namespace)


def _conditions(obj: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {c.get("type"): c for c in (obj or {}).get("status", {}).get("conditions") or []}


def static_instance_running(obj: dict[str, Any] | None) -> tuple[bool, str | None, str]:
    """Deckhouse CAPS StaticInstance: phase Running (Error is reported, CAPS retries it)."""
    if obj is None:
        return False, None, "not created yet"
    phase = static_instance_phase(obj, "no phase yet")
    return phase == "Running", None, "phase %s" % phase


def static_instance_released(obj: dict[str, Any] | None) -> tuple[bool, str | None, str]:
    """A StaticInstance the NodeGroup gave back: cleaned and Pending (or gone)."""
    if obj is None:
        return True, None, "deleted"
    phase = static_instance_phase(obj, "Pending")
    return phase == "Pending", None, "phase %s" % phase


def node_ready(obj: dict[str, Any] | None) -> tuple[bool, str | None, str]:
    if obj is None:
        return False, None, "Node not registered yet"
    ready = _conditions(obj).get("Ready", {})
    return (
        ready.get("status") == "True",
        None,
        "Ready=%s (%s)" % (ready.get("status", "Unknown"), ready.get("reason", "")),
    )


def node_gpus(minimum: int) -> Predicate:
    """A Node whose capacity lists at least `minimum` nvidia.com/gpu."""

    def predicate(obj: dict[str, Any] | None) -> tuple[bool, str | None, str]:
        if obj is None:
            return False, None, "Node not registered yet"
        capacity = (obj.get("status") or {}).get("capacity") or {}
        count = int(capacity.get("nvidia.com/gpu", "0") or 0)
        return count >= minimum, None, "capacity nvidia.com/gpu=%s" % count

    return predicate


def deployment_available(obj: dict[str, Any] | None) -> tuple[bool, str | None, str]:
    if obj is None:
        return False, None, "Deployment not created yet"
    status = obj.get("status") or {}
    wanted = (obj.get("spec") or {}).get("replicas", 1)
    generation_seen = status.get("observedGeneration", 0) >= obj.get("metadata", {}).get("generation", 0)
    available = status.get("availableReplicas", 0)
    updated = status.get("updatedReplicas", 0)
    done = generation_seen and available >= wanted and updated >= wanted
    return done, None, "%s/%s replicas available, %s updated" % (available, wanted, updated)


def cluster_policy_ready(obj: dict[str, Any] | None) -> tuple[bool, str | None, str]:
    """NVIDIA GPU Operator ClusterPolicy: status.state `ready`."""
    if obj is None:
        return False, None, "ClusterPolicy not created yet (is the GPU Operator installed?)"
    state = (obj.get("status") or {}).get("state") or "no state yet"
    return state == "ready", None, "state %s" % state


class Condition(NamedTuple):
    """A wait lab.llm.k8s_wait offers by name: the kind it watches, whether that is namespaced, and its predicate."""

    api_version: str
    kind: str
    namespaced: bool
    # (the module's parameters) -> a waiter predicate
    predicate: Callable[[Dict[str, Any]], Predicate]


CONDITIONS = {
    "node_ready": Condition("v1", "Node", False, lambda params: node_ready),
    "node_gpus": Condition("v1", "Node", False, lambda params: node_gpus(params["gpus"])),
    "deployment_available": Condition("apps/v1", "Deployment", True, lambda params: deployment_available),
    "cluster_policy_ready": Condition("nvidia.com/v1", "ClusterPolicy", False, lambda params: cluster_policy_ready),
}


def rayservice_running(app_name: str) -> Predicate:
    """KubeRay RayService (ray.io/v1) serving `app_name` RUNNING on its active cluster, no upgrade pending.

    Status fields as the RayService CRD defines them: conditions Ready/UpgradeInProgress (KubeRay >= 1.3),
    activeServiceStatus/pendingServiceStatus.applicationStatuses.<app>.status (Ray Serve states RUNNING,
    DEPLOYING, DEPLOY_FAILED, UNHEALTHY, ...), observedGeneration.
    """

    def predicate(obj: dict[str, Any] | None) -> tuple[bool, str | None, str]:
        if obj is None:
            return False, None, "RayService not created yet"
        status = obj.get("status") or {}
        generation = obj.get("metadata", {}).get("generation", 0)
        for side in ("pendingServiceStatus", "activeServiceStatus"):
            app = ((status.get(side) or {}).get("applicationStatuses") or {}).get(app_name) or {}
            if app.get("status") == "DEPLOY_FAILED":
                cluster = (status.get(side) or {}).get("rayClusterName", "?")
                return (
                    False,
                    "application %s DEPLOY_FAILED on RayCluster %s: %s"
                    % (app_name, cluster, app.get("message", "(no message)")),
                    "DEPLOY_FAILED",
                )
        if status.get("observedGeneration", 0) < generation:
            return False, None, "KubeRay has not observed generation %s yet" % generation
        active = ((status.get("activeServiceStatus") or {}).get("applicationStatuses") or {}).get(app_name) or {}
        conditions = _conditions(obj)
        upgrading = conditions.get("UpgradeInProgress", {}).get("status") == "True" or bool(
            (status.get("pendingServiceStatus") or {}).get("rayClusterName")
        )
        ready = conditions.get("Ready", {}).get("status", "True" if status.get("serviceStatus") == "Running" else "")
        state = "application %s %s, Ready=%s%s" % (
            app_name,
            active.get("status", "absent"),
            ready or "Unknown",
            ", upgrade in progress" if upgrading else "",
        )
        return active.get("status") == "RUNNING" and ready == "True" and not upgrading, None, state

    return predicate
