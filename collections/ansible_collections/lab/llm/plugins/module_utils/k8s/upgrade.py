# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What KubeRay will do with a changed RayService, and whether the GPUs are there for it.

KubeRay decides between updating the running RayCluster and starting a second one by hashing the RayCluster spec
with the fields it mutes (ray-project/kuberay v1.7.0, ray-operator/controllers/ray/utils/util.go
GenerateHashWithoutReplicasAndWorkersToDelete; rayservice_controller.go shouldPrepareNewCluster, isClusterSpecHashEqual,
isZeroDowntimeUpgradeEnabled). A second cluster needs its own GPUs while the first keeps serving; KubeRay's code says
so itself ("some users might not have sufficient GPU resources to run two RayClusters simultaneously"), and a new
cluster that cannot be scheduled stays Pending until the wait times out.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from ansible_collections.lab.llm.plugins.module_utils.k8s.deckhouse import GPU_CLASS_LABEL

GPU_RESOURCE = "nvidia.com/gpu"
NEW_CLUSTER_STRATEGIES = ("NewCluster", "NewClusterWithIncrementalUpgrade")
# RayService spec.upgradeStrategy.type: KubeRay's RayServiceUpgradeType values (ray-operator/apis/ray/v1/
# rayservice_types.go); the CRD's schema leaves the field a plain string.
UPGRADE_STRATEGIES = (*NEW_CLUSTER_STRATEGIES, "None")
# How a change reaches the RayService's cluster: updated where it runs, or through a second RayCluster. The answers
# of cluster_change() (besides `none`), and the choices of lab.llm.rayservice's engine_change_upgrade.
IN_PLACE, NEW_CLUSTER = "in_place", "new_cluster"
ENGINE_CHANGE_UPGRADES = (IN_PLACE, NEW_CLUSTER)


def _hashed(cluster_spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """The RayCluster spec as KubeRay hashes it: replicas, min/max, workersToDelete, tolerations, scheduling gates,
    suspend and the cluster's upgradeStrategy muted."""
    spec = copy.deepcopy(dict(cluster_spec or {}))
    spec.pop("suspend", None)
    spec.pop("upgradeStrategy", None)
    groups = [spec.get("headGroupSpec") or {}, *(spec.get("workerGroupSpecs") or [])]
    for index, group in enumerate(groups):
        pod = (group.get("template") or {}).get("spec") or {}
        pod.pop("tolerations", None)
        pod.pop("schedulingGates", None)
        if index:
            for key in ("replicas", "minReplicas", "maxReplicas"):
                group.pop(key, None)
            (group.get("scaleStrategy") or {}).pop("workersToDelete", None)
    return spec


def _same(left: object, right: object) -> bool:
    return json.dumps(left, sort_keys=True) == json.dumps(right, sort_keys=True)


def cluster_change(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """How KubeRay applies `after` (a RayService spec) over `before`: `none` (the cluster stays as it is, also when
    only replicas change), `in_place` (worker groups appended at the end: the running cluster is updated) or
    `new_cluster` (a second RayCluster is prepared, when the upgrade strategy allows it)."""
    old, new = _hashed(before.get("rayClusterConfig")), _hashed(after.get("rayClusterConfig"))
    if _same(old, new):
        return "none"
    kept = len(old.get("workerGroupSpecs") or [])
    if len(new.get("workerGroupSpecs") or []) >= kept:
        truncated = dict(new, workerGroupSpecs=(new.get("workerGroupSpecs") or [])[:kept])
        if _same(old, truncated):
            return IN_PLACE
    return NEW_CLUSTER


def gpus_by_class(rayservice_spec: Mapping[str, Any]) -> dict[str, int]:
    """GPUs a RayService's cluster asks for, per GPU class (the worker's `lab-llm.io/gpu-class` node selector, else
    its group name): replicas x the container's `nvidia.com/gpu` limit."""
    found: dict[str, int] = {}
    for group in (rayservice_spec.get("rayClusterConfig") or {}).get("workerGroupSpecs") or []:
        pod = (group.get("template") or {}).get("spec") or {}
        per_pod = 0
        for container in pod.get("containers") or []:
            limits = (container.get("resources") or {}).get("limits") or {}
            per_pod += int(limits.get(GPU_RESOURCE, 0) or 0)
        if not per_pod:
            continue
        gpu_class = (pod.get("nodeSelector") or {}).get(GPU_CLASS_LABEL) or group.get("groupName")
        found[gpu_class] = found.get(gpu_class, 0) + int(group.get("replicas", 1)) * per_pod
    return found


def budget_problems(before: Mapping[str, Any] | None, after: Mapping[str, Any], budget: Mapping[str, int]) -> list[str]:
    """Why the cluster cannot run `after` (a RayService spec) with `budget` GPUs per class, [] when it can.

    `before` is the stored RayService spec (None on create). When KubeRay would prepare a second RayCluster, the GPUs
    of the running one count too, until traffic has moved.
    """
    needed = gpus_by_class(after)
    running: dict[str, int] = {}
    if before:
        change = cluster_change(before, after)
        strategy = ((after.get("upgradeStrategy") or {}).get("type")) or "NewCluster"
        if change == NEW_CLUSTER and strategy in NEW_CLUSTER_STRATEGIES:
            running = gpus_by_class(before)
    problems: list[str] = []
    for gpu_class in sorted(set(needed) | set(running)):
        total = needed.get(gpu_class, 0) + running.get(gpu_class, 0)
        have = int(budget.get(gpu_class, 0))
        if total > have:
            if running:
                problems.append(
                    "%s: %d GPU(s) for the new RayCluster + %d for the one still serving = %d, the cluster has %d"
                    % (gpu_class, needed.get(gpu_class, 0), running.get(gpu_class, 0), total, have)
                )
            else:
                problems.append("%s: %d GPU(s) needed, the cluster has %d" % (gpu_class, total, have))
    return problems
