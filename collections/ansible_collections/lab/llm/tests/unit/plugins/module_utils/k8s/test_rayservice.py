"""module_utils/k8s/rayservice.py: memory quantities, read by the kubernetes client's parser, and what a worker pod
of a group asks for.

Placement (plan_placement), driven through lab.llm.rayservice: every pipeline stage is placed by its GPU class, the
fit plan's bundles reach the Serve app, the worker groups advertise the classes they ask for, and each group is sized
to fit its nodes (issue 17, items 1-2), for the two mixed-card plans of the reference lab (TP1 PP4, 5/12/12/11 and
7/20/19/18)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ansible_collections.lab.llm.plugins.module_utils.k8s.rayservice import RenderError, quantity_bytes, worker_memory
from ansible_collections.lab.llm.plugins.modules import rayservice
from ansible_collections.lab.llm.tests.unit.plugins.modules.test_rayservice import (
    args,
    rayservice_schema_problems,
    rendered,
)
from lab_llm.app.builder import to_llm_config
from lab_llm.config import parse_config
from tests.module_runner import run_module
from tests.unit.serve.plan.plan_inputs import MIXED_CARD_PARTITIONS, mixed_card_plan


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        ("32Gi", 32 * 2**30),
        ("32768Mi", 32 * 2**30),
        ("1.5Gi", 3 * 2**29),
        ("64G", 64 * 10**9),
        ("1Pi", 2**50),
        ("1e9", 10**9),
        ("1073741824", 2**30),
        (1073741824, 2**30),
    ],
)
def test_memory_quantities_in_every_form_kubernetes_accepts(quantity: str | int, expected: int) -> None:
    assert quantity_bytes(quantity, "worker_memory") == expected


@pytest.mark.parametrize(
    ("quantity", "message"),
    [
        ("lots", "worker_memory='lots' is not a memory quantity (for example 32Gi)"),
        ("32 Gi", "worker_memory='32 Gi' is not a memory quantity (for example 32Gi)"),
        ("32gi", "worker_memory='32gi' is not a memory quantity (for example 32Gi)"),
        ("1_000", "worker_memory='1_000' is not a memory quantity (for example 32Gi)"),
        ("Infinity", "worker_memory='Infinity' is not a memory quantity (for example 32Gi)"),
        ("0", "worker_memory='0' is no memory: a memory quantity is more than 0 bytes (for example 32Gi)"),
        ("-1Gi", "worker_memory='-1Gi' is no memory: a memory quantity is more than 0 bytes (for example 32Gi)"),
        (
            "512m",
            "worker_memory='512m' is 0.512 bytes, a fraction of a byte: the suffix m means milli; mega is M, mebi Mi "
            "(for example 32Gi)",
        ),
    ],
)
def test_bad_quantities_are_named_with_what_is_wrong(quantity: str, message: str) -> None:
    with pytest.raises(RenderError) as error:
        quantity_bytes(quantity, "worker_memory")
    assert str(error.value) == message


def test_a_worker_gets_what_its_node_has_less_the_reserve() -> None:
    spec = {"worker_memory": "32Gi", "node_reserved_memory": "1.5Gi"}
    assert worker_memory(spec, {"gpu_class": "rtx-3090", "node_memory": "64G"}) == "%dMi" % (
        (64 * 10**9 - 3 * 2**29) // 2**20
    )


# The reference lab's VMs (inventory/reference-lab/group_vars/gpu_nodes.yml: gpu_vm_memory_mb).
INVENTORY_GROUPS = [
    {"gpu_class": "rtx-3090", "replicas": 3, "node_group": "gpu-rtx-3090", "node_memory": "64Gi"},
    {"gpu_class": "rtx-3060", "replicas": 1, "node_group": "gpu-rtx-3060", "node_memory": "32Gi"},
]


def mixed_plan(name: str) -> dict[str, Any]:
    """The plan as the module takes it (the fit plan's JSON)."""
    return mixed_card_plan(name).model_dump(mode="json")


@pytest.mark.parametrize("name", sorted(MIXED_CARD_PARTITIONS))
def test_each_stage_of_a_mixed_card_plan_asks_for_the_class_its_worker_group_advertises(
    shared_reference: Any, name: str
) -> None:
    plan = mixed_plan(name)
    partition = MIXED_CARD_PARTITIONS[name]
    assert plan["layer_partition"] == list(partition)
    manifest = rendered(fit_plan=plan, worker_groups=INVENTORY_GROUPS)
    assert rayservice_schema_problems(shared_reference, manifest) == []
    app = json.loads(manifest["spec"]["serveConfigV2"])["applications"][0]["args"]
    config = parse_config(app)
    # Rank i's bundle is stage i's card class: the 3060 gets the small first stage, the 3090s the rest.
    stage_classes = [stage["gpus"][0]["gpu_class"] for stage in plan["stages"]]
    assert stage_classes == ["rtx-3060", "rtx-3090", "rtx-3090", "rtx-3090"]
    bundles = [dict(b) for b in config.serving.placement_bundles or ()]
    assert [next(k for k in b if k not in ("CPU", "GPU")) for b in bundles] == stage_classes
    assert config.engine.env["VLLM_RAY_BUNDLE_INDICES"] == "0,1,2,3"
    assert config.engine.env["VLLM_PP_LAYER_PARTITION"] == ",".join(map(str, partition))
    # What the app hands Ray: the same bundles in rank order.
    assert to_llm_config(config).placement_group_config["bundles"] == bundles
    # Every class a bundle asks for is advertised by its worker group, one unit per GPU.
    groups = {g["groupName"]: g for g in manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    advertised: dict[str, int] = {}
    for group in groups.values():
        resources = json.loads(group["rayStartParams"]["resources"].strip("'"))
        for resource, units in resources.items():
            advertised[resource] = advertised.get(resource, 0) + units * group["replicas"]
    for gpu_class in set(stage_classes):
        assert advertised[gpu_class] >= stage_classes.count(gpu_class)


def test_plan_worker_groups_keep_the_inventorys_per_class_settings_and_fit_their_nodes() -> None:
    manifest = rendered(fit_plan=mixed_plan("qwen2.5-32b-bf16"), worker_groups=INVENTORY_GROUPS)
    groups = {g["groupName"]: g for g in manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    memory = {
        name: g["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"] for name, g in groups.items()
    }
    # 32 GiB VM minus the node's 4 GiB: a request the 3060's node can schedule (32Gi never could).
    assert memory == {"rtx-3060": "28672Mi", "rtx-3090": "61440Mi"}
    assert groups["rtx-3060"]["template"]["spec"]["nodeSelector"]["node.deckhouse.io/group"] == "gpu-rtx-3060"
    explicit = [dict(INVENTORY_GROUPS[0]), {**INVENTORY_GROUPS[1], "memory": "24Gi"}]
    manifest = rendered(fit_plan=mixed_plan("qwen2.5-32b-bf16"), worker_groups=explicit)
    groups = {g["groupName"]: g for g in manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    assert groups["rtx-3060"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "24Gi"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"worker_groups": [INVENTORY_GROUPS[0], {**INVENTORY_GROUPS[1], "memory": "40Gi"}]},
            "worker_groups (rtx-3060): memory 40Gi is more than the node has (node_memory 32Gi)",
        ),
        (
            {"worker_groups": [INVENTORY_GROUPS[0], {**INVENTORY_GROUPS[1], "node_memory": "lots"}]},
            "worker_groups (rtx-3060).node_memory='lots' is not a memory quantity",
        ),
    ],
)
def test_worker_groups_that_cannot_be_scheduled_are_refused(change: dict[str, Any], message: str) -> None:
    result = run_module(rayservice.main, args(render_only=True, fit_plan=mixed_plan("qwen2.5-32b-bf16"), **change))
    assert result["failed"] is True
    assert message in result["msg"]


def test_plan_bundles_naming_a_class_no_worker_group_offers_are_refused() -> None:
    plan = mixed_plan("qwen2.5-32b-bf16")
    plan["worker_groups"] = [{"gpu_class": "rtx-3090", "replicas": 4, "gpus_per_worker": 1}]
    result = run_module(rayservice.main, args(render_only=True, fit_plan=plan, worker_groups=INVENTORY_GROUPS))
    assert result["failed"] is True
    assert "ray_placement_bundles[0]" in result["msg"] and "rtx-3060" in result["msg"]
