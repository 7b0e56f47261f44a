"""Inputs shared by the fit planner's tests: model configs (public config.json fields) and GPU inventories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

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
