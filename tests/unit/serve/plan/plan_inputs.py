"""Inputs shared by the fit planner's tests: model configs (public config.json fields), GPU inventories, and the
reference lab's mixed-card plans that the app's and the rayservice module's placement tests start from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lab_llm.plan import FitPlan, plan_fit
from tests.conftest import REPO_ROOT

MODELS_DIR = REPO_ROOT / "tests" / "fixtures" / "models"
REFERENCE_LAB_FIT_PLAN = REPO_ROOT / "inventory" / "reference-lab" / "group_vars" / "all" / "fit_plan.yml"


def model_path(name: str) -> Path:
    return MODELS_DIR / f"{name}.json"


def reference_lab_vars() -> dict[str, Any]:
    return yaml.safe_load(REFERENCE_LAB_FIT_PLAN.read_text(encoding="utf-8"))


def reference_lab_inventory() -> dict[str, Any]:
    """1x RTX 3060 12 GB + 3x RTX 3090 24 GB, one per node, 10GbE between nodes."""
    return reference_lab_vars()["lab_llm_gpu_inventory"]


def single_node(*classes: str, link: str = "pcie") -> dict[str, Any]:
    return {"nodes": [{"name": "box", "link": link, "gpus": [{"class": c} for c in classes]}]}


def one_gpu_per_node(*classes: str, network: str = "10gbe") -> dict[str, Any]:
    return {
        "network": network,
        "nodes": [{"name": f"node-{i}", "gpus": [{"class": c}]} for i, c in enumerate(classes)],
    }


# The reference lab's two mixed-card plans (issue 17), each TP1 PP4 over the 3060 and the three 3090s, with the layer
# split the planner gives it: Dolphin 3.0 R1 Mistral 24B AWQ at 32k context for 10 users at once (the lab's own
# model), and the README's Qwen2.5-32B bf16 row.
MIXED_CARD_PARTITIONS: dict[str, tuple[int, ...]] = {
    "dolphin-24b-awq-32k-x10": (5, 12, 12, 11),
    "qwen2.5-32b-bf16": (7, 20, 19, 18),
}


def mixed_card_plan(name: str) -> FitPlan:
    """One of MIXED_CARD_PARTITIONS' plans, planned afresh on the reference lab's inventory."""
    if name == "dolphin-24b-awq-32k-x10":
        return plan_fit(
            model_path("dolphin3-r1-mistral-24b-awq"),
            reference_lab_inventory(),
            weights="awq",
            context_length=32768,
            concurrency=10,
            limits={"gpu_memory_utilization": 0.97},
        )
    if name == "qwen2.5-32b-bf16":
        return plan_fit(
            model_path("qwen2.5-32b"),
            reference_lab_inventory(),
            weights="bf16",
            context_length=32768,
            limits={"gpu_memory_utilization": 0.97},
        )
    raise KeyError(name)
