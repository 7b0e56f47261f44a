"""The model spec as inventories write it (``lab_llm_model``): one mapping for the CLI, Ansible and Ray stages::

lab_llm_model:
  name: org/model                 # what vLLM loads (hub id or path on the GPU nodes)
  served_model_name: model        # optional
  config: {num_hidden_layers: ...} # config.json fields, or
  config_path: path/config.json   # a config.json (or its directory) readable where the planner runs
  weights: awq                    # optional: fp16 | bf16 | fp8 | awq | gptq (default: checkpoint's, else bf16)
  group_size: 128                 # optional
  kv_cache_dtype: auto            # optional
  context_length: 32768           # optional: default the longest that fits
  concurrency: 1                  # optional
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lab_llm.plan.errors import PlanInputError
from lab_llm.plan.inventory import GpuInventory, Limits
from lab_llm.plan.planner import plan_fit
from lab_llm.plan.result import FitPlan

MODEL_SPEC_KEYS = frozenset(
    {
        "name",
        "served_model_name",
        "config",
        "config_path",
        "weights",
        "group_size",
        "kv_cache_dtype",
        "context_length",
        "concurrency",
    }
)


def _optional_int(spec: Mapping[str, Any], key: str) -> int | None:
    value = spec.get(key)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PlanInputError(f"model spec {key}: {value!r} is not an integer") from None


def plan_from_spec(
    model_spec: Mapping[str, Any],
    inventory: GpuInventory | Mapping[str, Any] | str | Path,
    limits: Limits | Mapping[str, Any] | None = None,
    base_dir: Path | None = None,
) -> FitPlan:
    """Plan from a ``lab_llm_model`` mapping; ``config_path`` is taken relative to ``base_dir`` if given."""
    unknown = sorted(set(model_spec) - MODEL_SPEC_KEYS)
    if unknown:
        raise PlanInputError(
            f"model spec has unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(MODEL_SPEC_KEYS))}"
        )
    config, config_path = model_spec.get("config"), model_spec.get("config_path")
    if bool(config) == bool(config_path):
        raise PlanInputError("model spec needs exactly one of 'config' (config.json fields) or 'config_path'")
    if config and not isinstance(config, Mapping):
        raise PlanInputError("model spec 'config' must be a mapping of config.json fields")
    source: Mapping[str, Any] | Path
    if config_path:
        path = Path(str(config_path))
        source = base_dir / path if base_dir and not path.is_absolute() else path
    else:
        source = config  # type: ignore[assignment]
    return plan_fit(
        source,
        inventory,
        weights=model_spec.get("weights") or None,
        group_size=_optional_int(model_spec, "group_size"),
        kv_cache_dtype=str(model_spec.get("kv_cache_dtype") or "auto"),
        context_length=_optional_int(model_spec, "context_length"),
        concurrency=_optional_int(model_spec, "concurrency") or 1,
        limits=limits,
        model_name=model_spec.get("name") or None,
        served_model_name=model_spec.get("served_model_name") or None,
    )
