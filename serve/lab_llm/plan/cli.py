"""``lab-llm plan``: the fit planner on the command line (a table for people, ``--json`` for scripts).

Exit status: 0 a plan, 1 the model does not fit (the reasons and the cheapest fixes are printed), 2 bad input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from lab_llm.plan.errors import DoesNotFitError, PlanInputError
from lab_llm.plan.report import render_plan
from lab_llm.plan.spec import plan_from_spec

DOES_NOT_FIT = 1
BAD_INPUT = 2


def _read_yaml(path: Path, what: str) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise PlanInputError(f"{what} {str(path)!r} is not readable YAML: {error}") from error


def _model_spec(model: Path) -> tuple[dict[str, Any], Path | None]:
    """A config.json (or its directory) becomes ``{config_path}``; a YAML file holds a ``lab_llm_model`` spec."""
    if model.suffix in (".yml", ".yaml"):
        document = _read_yaml(model, "model spec")
        spec = document.get("lab_llm_model", document) if isinstance(document, dict) else None
        if not isinstance(spec, dict):
            raise PlanInputError(f"model spec {str(model)!r} is not a mapping")
        return dict(spec), model.parent
    return {"config_path": str(model)}, None


def _inventory(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """An inventory file with ``nodes`` at the top, or inventory vars with ``lab_llm_gpu_inventory`` (and
    optionally ``lab_llm_fit_limits``)."""
    document = _read_yaml(path, "GPU inventory")
    if not isinstance(document, dict):
        raise PlanInputError(f"GPU inventory {str(path)!r} is not a mapping")
    inventory = document.get("lab_llm_gpu_inventory", document)
    limits = document.get("lab_llm_fit_limits") or {}
    if not isinstance(inventory, dict) or not isinstance(limits, dict):
        raise PlanInputError(f"GPU inventory {str(path)!r}: lab_llm_gpu_inventory and lab_llm_fit_limits are mappings")
    return inventory, dict(limits)


def plan_command(
    model: Annotated[
        Path, typer.Option("--model", "-m", help="config.json, its directory, or a YAML model spec (lab_llm_model).")
    ],
    inventory: Annotated[
        Path,
        typer.Option(
            "--inventory", "-i", help="GPU inventory YAML: `nodes: [...]`, or vars with lab_llm_gpu_inventory."
        ),
    ],
    model_name: Annotated[str | None, typer.Option(help="Model id or path vLLM loads (engine `model`).")] = None,
    weights: Annotated[
        str | None, typer.Option(help="fp16, bf16, fp8, awq or gptq (default: the checkpoint's, else bf16).")
    ] = None,
    group_size: Annotated[int | None, typer.Option(help="AWQ/GPTQ group size (default 128).")] = None,
    kv_cache_dtype: Annotated[str | None, typer.Option(help="auto, fp16, bf16 or fp8.")] = None,
    context: Annotated[int | None, typer.Option(help="Wanted max_model_len (default: the longest that fits).")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Requests of that length held at once.")] = None,
    gpu_memory_utilization: Annotated[float | None, typer.Option(help="Ceiling (default 0.95).")] = None,
    cpu_offload_gib: Annotated[float | None, typer.Option(help="CPU RAM per GPU for weights (default 0).")] = None,
    allow_tp_over_network: Annotated[
        bool | None, typer.Option("--allow-tp-over-network/--no-tp-over-network", help="Let TP span nodes.")
    ] = None,
    max_num_seqs: Annotated[int | None, typer.Option(help="vLLM max_num_seqs (default 256).")] = None,
    enforce_eager: Annotated[bool | None, typer.Option(help="No CUDA graphs.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (for scripts and Ansible).")] = False,
) -> None:
    """Fit a model to the GPUs: TP/PP layout, layer split, memory per GPU, engine config, or why it does not fit."""
    try:
        spec, base_dir = _model_spec(model)
        inventory_data, limits = _inventory(inventory)
        overrides = {
            "name": model_name,
            "weights": weights,
            "group_size": group_size,
            "kv_cache_dtype": kv_cache_dtype,
            "context_length": context,
            "concurrency": concurrency,
        }
        spec.update({key: value for key, value in overrides.items() if value is not None})
        limit_overrides = {
            "gpu_memory_utilization": gpu_memory_utilization,
            "cpu_offload_gib": cpu_offload_gib,
            "allow_tp_over_network": allow_tp_over_network,
            "max_num_seqs": max_num_seqs,
            "enforce_eager": enforce_eager,
        }
        limits.update({key: value for key, value in limit_overrides.items() if value is not None})
        plan = plan_from_spec(spec, inventory_data, limits, base_dir=base_dir)
    except PlanInputError as error:
        if as_json:
            typer.echo(json.dumps({"fits": False, "error": str(error)}))
        else:
            typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=BAD_INPUT) from None
    except DoesNotFitError as error:
        typer.echo(json.dumps({"fits": False, **error.as_dict()}) if as_json else str(error))
        raise typer.Exit(code=DOES_NOT_FIT) from None
    if as_json:
        typer.echo(json.dumps({"fits": True, "plan": plan.model_dump(mode="json")}))
    else:
        typer.echo(render_plan(plan, spec.get("context_length"), int(spec.get("concurrency") or 1)))
