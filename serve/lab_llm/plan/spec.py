"""The model spec as inventories write it (``lab_llm_model``): one mapping for the CLI, Ansible and Ray stages::

lab_llm_model:
  name: org/model                 # what vLLM loads (Hub model id or path on the GPU nodes); without config and
                                  # config_path, the planner reads config.json from here (Hub or local path)
  revision: main                  # optional: branch, tag or commit of a Hub model
  served_model_name: model        # optional
  config: {num_hidden_layers: ...} # optional: config.json fields, or
  config_path: path/config.json   # optional: a config.json (or its directory) readable where the planner runs
  weights: awq                    # optional: fp16 | bf16 | fp8 | awq | gptq (default: checkpoint's, else bf16)
  group_size: 128                 # optional
  kv_cache_dtype: auto            # optional
  context_length: 32768           # optional: default the longest the chosen layout holds
  concurrency: 1                  # optional

Defaults are ``plan_fit``'s (model) and ``Limits``' (limits); this module passes on only what is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lab_llm.plan.errors import PlanInputError
from lab_llm.plan.gpus import merge_inventory
from lab_llm.plan.inventory import GpuInventory, Limits
from lab_llm.plan.planner import plan_fit
from lab_llm.plan.result import FitPlan

MODEL_SPEC_KEYS = frozenset(
    {
        "name",
        "revision",
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
    inventory: GpuInventory | Mapping[str, Any] | str | Path | None,
    limits: Limits | Mapping[str, Any] | None = None,
    base_dir: Path | None = None,
    discovered_gpus: Sequence[Mapping[str, Any]] = (),
) -> FitPlan:
    """Plan from a ``lab_llm_model`` mapping; ``config_path`` is taken relative to ``base_dir`` if given.

    ``discovered_gpus``: what Stages 1-2 found, ``[{name, host, gpus: [lab_llm_gpus items]}]`` (see
    ``lab_llm.plan.gpus``); the hand-written ``inventory`` then only overrides nodes and sets the network."""
    unknown = sorted(set(model_spec) - MODEL_SPEC_KEYS)
    if unknown:
        raise PlanInputError(
            f"model spec has unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(MODEL_SPEC_KEYS))}"
        )
    config, config_path, name = model_spec.get("config"), model_spec.get("config_path"), model_spec.get("name")
    if config and config_path:
        raise PlanInputError("model spec takes 'config' (config.json fields) or 'config_path', not both")
    if not (config or config_path or name):
        raise PlanInputError("model spec needs 'name' (a Hub model id or model directory), 'config' or 'config_path'")
    if config and not isinstance(config, Mapping):
        raise PlanInputError("model spec 'config' must be a mapping of config.json fields")
    source: Mapping[str, Any] | Path | str
    if config_path:
        path = Path(str(config_path))
        source = base_dir / path if base_dir and not path.is_absolute() else path
    elif config:
        source = config
    else:
        source = str(name)
    notes: list[str] = []
    if discovered_gpus:
        written = None if inventory is None or isinstance(inventory, GpuInventory | str | Path) else inventory
        if written is None and inventory is not None:
            raise PlanInputError("with discovered GPUs, the hand-written inventory must be a mapping")
        inventory, notes = merge_inventory(discovered_gpus, written)
    if inventory is None:
        raise PlanInputError("no GPUs: give a GPU inventory, or run Stages 1-2 so their facts name the cards")
    optional: dict[str, Any] = {
        "weights": model_spec.get("weights") or None,
        "group_size": _optional_int(model_spec, "group_size"),
        "kv_cache_dtype": model_spec.get("kv_cache_dtype") or None,
        "context_length": _optional_int(model_spec, "context_length"),
        "concurrency": _optional_int(model_spec, "concurrency"),
        "served_model_name": model_spec.get("served_model_name") or None,
        "revision": model_spec.get("revision") or None,
    }
    return plan_fit(
        source,
        inventory,
        limits=limits,
        model_name=name or None,
        notes=tuple(notes),
        **{key: value for key, value in optional.items() if value is not None},
    )
