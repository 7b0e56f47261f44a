"""lab.llm.rayservice with a GPU budget: a change that makes KubeRay prepare a second RayCluster is refused before
anything is written when the two clusters' GPUs do not fit; changes KubeRay applies to the running cluster pass.

Which changes need a second cluster follows KubeRay v1.7.0 (module_utils/k8s/upgrade.py cites the code)."""

from __future__ import annotations

import copy
from typing import Any

from ansible_collections.lab.llm.plugins.module_utils.k8s import upgrade
from ansible_collections.lab.llm.plugins.modules import rayservice
from ansible_collections.lab.llm.tests.unit.plugins.modules.test_rayservice import args, rendered, with_namespace
from tests.module_runner import run_module
from tests.standins.k8s import fixtures
from tests.standins.k8s.controllers import RAY, play_kuberay
from tests.standins.k8s.server import KubeApiStandIn

kube_api = fixtures.kube_api

# The reference lab: three RTX 3090 and one RTX 3060; the model uses two 3090s (TP=1, PP=2).
LAB = {"rtx-3090": 3, "rtx-3060": 1}
TWO_3090 = dict(
    engine={"model": "/models/m", "served_model_name": "m", "pipeline_parallel_size": 2},
    worker_groups=[{"gpu_class": "rtx-3090", "replicas": 2}],
)


def deployed(api: KubeApiStandIn, **extra: Any) -> dict[str, Any]:
    with_namespace(api)
    play_kuberay(api)
    first = run_module(rayservice.main, args(gpu_budget=LAB, **TWO_3090, **extra))
    assert not first.get("failed"), first
    return api.get(RAY, "RayService", "lab-llm", "lab-llm")


def test_a_new_image_that_needs_a_second_cluster_is_refused_before_writing(kube_api: KubeApiStandIn) -> None:
    before = deployed(kube_api)
    writes = len(kube_api.events)
    result = run_module(
        rayservice.main, args(gpu_budget=LAB, image="registry.example.org/lab-llm/serve:0.2.0", **TWO_3090)
    )
    assert result["failed"] is True
    assert result["msg"] == (
        "RayService lab-llm/lab-llm: this change makes KubeRay start a second RayCluster beside the serving one, which "
        "cannot be scheduled with the GPUs the cluster has (rtx-3090: 2 GPU(s) for the new RayCluster + 2 for the "
        "one still serving = 4, the cluster has 3); free GPUs, or take the change with downtime (state=absent, then "
        "apply) or keep the cluster (engine_change_upgrade=in_place)"
    )
    assert len(kube_api.events) == writes  # nothing written
    assert kube_api.get(RAY, "RayService", "lab-llm", "lab-llm")["spec"] == before["spec"]


def test_check_mode_refuses_too(kube_api: KubeApiStandIn) -> None:
    deployed(kube_api)
    result = run_module(
        rayservice.main, args(gpu_budget=LAB, image="registry.example.org/x:2", **TWO_3090), check_mode=True
    )
    assert result["failed"] is True
    assert "cannot be scheduled" in result["msg"]


def test_with_enough_gpus_the_upgrade_goes_through(kube_api: KubeApiStandIn) -> None:
    deployed(kube_api)
    result = run_module(
        rayservice.main, args(gpu_budget={"rtx-3090": 4}, image="registry.example.org/lab-llm/serve:0.2.0", **TWO_3090)
    )
    assert not result.get("failed"), result
    assert result["ray_cluster"] == "lab-llm-raycluster-g2"


def test_warn_applies_with_a_warning(kube_api: KubeApiStandIn, warnings: list[str]) -> None:
    deployed(kube_api)
    result = run_module(
        rayservice.main,
        args(gpu_budget=LAB, gpu_budget_check="warn", image="registry.example.org/lab-llm/serve:0.2.0", **TWO_3090),
    )
    assert not result.get("failed"), result
    assert len(warnings) == 1
    assert "cannot be scheduled" in warnings[0]
    assert kube_api.get(RAY, "RayService", "lab-llm", "lab-llm")["spec"]["rayClusterConfig"]["headGroupSpec"][
        "template"
    ]["spec"]["containers"][0]["image"].endswith(":0.2.0")


def test_an_in_place_engine_change_needs_no_spare_gpus(kube_api: KubeApiStandIn) -> None:
    deployed(kube_api)
    engine = dict(TWO_3090["engine"], max_model_len=4096)
    result = run_module(rayservice.main, args(gpu_budget=LAB, engine=engine, worker_groups=TWO_3090["worker_groups"]))
    assert not result.get("failed"), result
    assert result["changed"] is True


def test_a_new_cluster_engine_change_is_checked(kube_api: KubeApiStandIn) -> None:
    deployed(kube_api, engine_change_upgrade="new_cluster")
    engine = dict(TWO_3090["engine"], max_model_len=4096)
    result = run_module(
        rayservice.main,
        args(
            gpu_budget=LAB,
            engine_change_upgrade="new_cluster",
            engine=engine,
            worker_groups=TWO_3090["worker_groups"],
        ),
    )
    assert result["failed"] is True
    assert "rtx-3090: 2 GPU(s) for the new RayCluster + 2 for the one still serving = 4" in result["msg"]


def test_a_first_deployment_larger_than_the_budget_is_refused(kube_api: KubeApiStandIn) -> None:
    with_namespace(kube_api)
    # args(): TP=2 x PP=2 on worker groups of 3 x rtx-3090 and 1 x rtx-3060.
    result = run_module(rayservice.main, args(gpu_budget={"rtx-3090": 2, "rtx-3060": 1}))
    assert result["failed"] is True
    assert result["msg"] == (
        "RayService lab-llm/lab-llm: the RayService cannot be scheduled with the GPUs the cluster has "
        "(rtx-3090: 3 GPU(s) needed, the cluster has 2)"
    )
    assert kube_api.get(RAY, "RayService", "lab-llm", "lab-llm") is None
    assert not run_module(rayservice.main, args(gpu_budget=LAB, wait=False)).get("failed")


def test_kuberays_rules_for_what_needs_a_second_cluster() -> None:
    base = rendered(**TWO_3090)["spec"]

    def changed(edit: Any) -> str:
        after = copy.deepcopy(base)
        edit(after["rayClusterConfig"])
        return upgrade.cluster_change(base, after)

    assert upgrade.cluster_change(base, copy.deepcopy(base)) == "none"
    # Muted by KubeRay's hash: replicas, min/max, workersToDelete, tolerations.
    assert changed(lambda c: c["workerGroupSpecs"][0].update(replicas=5, minReplicas=5, maxReplicas=5)) == "none"
    assert changed(lambda c: c["workerGroupSpecs"][0]["template"]["spec"].update(tolerations=[])) == "none"
    # A worker group appended at the end updates the running cluster.
    assert changed(lambda c: c["workerGroupSpecs"].append(dict(c["workerGroupSpecs"][0], groupName="x"))) == "in_place"
    # Anything else of a pod template is a new cluster.
    assert changed(lambda c: c["headGroupSpec"]["template"]["spec"]["containers"][0].update(image="i:2")) == (
        "new_cluster"
    )
    assert changed(lambda c: c["workerGroupSpecs"].insert(0, dict(c["workerGroupSpecs"][0], groupName="x"))) == (
        "new_cluster"
    )
    assert upgrade.gpus_by_class(base) == {"rtx-3090": 2}
    none_strategy = dict(rendered(**TWO_3090, image="i:2")["spec"], upgradeStrategy={"type": "None"})
    assert upgrade.budget_problems(base, none_strategy, {"rtx-3090": 2}) == []  # KubeRay keeps the cluster
