"""``lab-llm plan``: the fit planner on the command line (a table for people, ``--json`` for scripts).

Exit status: 0 a plan, 1 the model does not fit (the reasons and the cheapest fixes are printed), 2 bad input.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from lab_llm.plan.engine_args import playbook_vars, playbook_vars_yaml, vllm_serve_command
from lab_llm.plan.errors import DoesNotFitError, PlanInputError
from lab_llm.plan.gpus import nodes_from_short_forms
from lab_llm.plan.inventory import Limits
from lab_llm.plan.planner import plan_fit
from lab_llm.plan.report import render_plan
from lab_llm.plan.spec import plan_from_spec

DOES_NOT_FIT = 1
BAD_INPUT = 2


def _read_yaml(path: Path, what: str) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise PlanInputError(f"{what} {str(path)!r} is not readable YAML: {error}") from error


def _model_spec(model: str) -> tuple[dict[str, Any], Path | None]:
    """A YAML file holds a ``lab_llm_model`` spec; anything else (config.json, its directory, a Hub model id)
    is the model's name, read by the planner (``lab_llm.plan.checkpoint``)."""
    path = Path(model)
    if path.suffix in (".yml", ".yaml") and path.is_file():
        document = _read_yaml(path, "model spec")
        spec = document.get("lab_llm_model", document) if isinstance(document, dict) else None
        if not isinstance(spec, dict):
            raise PlanInputError(f"model spec {model!r} is not a mapping")
        return dict(spec), path.parent
    if path.exists():
        return {"config_path": model}, None
    if path.suffix in (".yml", ".yaml", ".json"):
        raise PlanInputError(f"model file {model!r} does not exist")
    return {"name": model}, None


def _inventory(path: Path | None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """An inventory file with ``nodes`` at the top, or inventory vars with ``lab_llm_gpu_inventory`` (and
    optionally ``lab_llm_fit_limits``)."""
    if path is None:
        return None, {}
    document = _read_yaml(path, "GPU inventory")
    if not isinstance(document, dict):
        raise PlanInputError(f"GPU inventory {str(path)!r} is not a mapping")
    inventory = document.get("lab_llm_gpu_inventory", document)
    limits = document.get("lab_llm_fit_limits") or {}
    if not isinstance(inventory, dict) or not isinstance(limits, dict):
        raise PlanInputError(f"GPU inventory {str(path)!r}: lab_llm_gpu_inventory and lab_llm_fit_limits are mappings")
    return inventory, dict(limits)


def _default(field: str) -> Any:
    """A planner default: a field of Limits, else a keyword of plan_fit (the two places they are defined)."""
    if field in Limits.model_fields:
        return Limits.model_fields[field].default
    return inspect.signature(plan_fit).parameters[field].default


def plan_command(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="Hugging Face model id (ORG/NAME), config.json or its directory, or a YAML model spec "
            "(lab_llm_model).",
        ),
    ],
    inventory: Annotated[
        Path | None,
        typer.Option(
            "--inventory", "-i", help="GPU inventory YAML: `nodes: [...]`, or vars with lab_llm_gpu_inventory."
        ),
    ] = None,
    gpus: Annotated[
        str | None,
        typer.Option(help="One card per node, e.g. 3090,3090,3090,3060 (replaces the inventory's nodes)."),
    ] = None,
    node: Annotated[
        list[str] | None,
        typer.Option(help="One node per use: 2x3090, or 2x3090+3060 (replaces the inventory's nodes)."),
    ] = None,
    network: Annotated[str | None, typer.Option(help="Link between nodes: 10gbe (default), 25gbe, ...")] = None,
    revision: Annotated[str | None, typer.Option(help="Branch, tag or commit of a Hub model.")] = None,
    model_name: Annotated[str | None, typer.Option(help="Model id or path vLLM loads (engine `model`).")] = None,
    weights: Annotated[
        str | None, typer.Option(help="fp16, bf16, fp8, awq or gptq (default: the checkpoint's, else bf16).")
    ] = None,
    group_size: Annotated[int | None, typer.Option(help="AWQ/GPTQ group size (default: the checkpoint's).")] = None,
    kv_cache_dtype: Annotated[
        str | None, typer.Option(help=f"auto, fp16, bf16 or fp8 (default {_default('kv_cache_dtype')}).")
    ] = None,
    context: Annotated[
        int | None,
        typer.Option(
            help="Wanted max_model_len (default: the longest the chosen layout holds at --concurrency, at least "
            "4096; layouts are ranked by speed, then GPU count, not by context)."
        ),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(help=f"Requests of that length held at once (default {_default('concurrency')}).")
    ] = None,
    gpu_memory_utilization: Annotated[
        float | None, typer.Option(help=f"Ceiling (default {_default('gpu_memory_utilization')}).")
    ] = None,
    cpu_offload_gib: Annotated[
        float | None, typer.Option(help=f"CPU RAM per GPU for weights (default {_default('cpu_offload_gib')}).")
    ] = None,
    allow_tp_over_network: Annotated[
        bool | None, typer.Option("--allow-tp-over-network/--no-tp-over-network", help="Let TP span nodes.")
    ] = None,
    max_num_seqs: Annotated[
        int | None, typer.Option(help=f"vLLM max_num_seqs (default {_default('max_num_seqs')}).")
    ] = None,
    enforce_eager: Annotated[bool | None, typer.Option(help="No CUDA graphs.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (for scripts and Ansible).")] = False,
) -> None:
    """Fit a model to the GPUs: TP/PP layout, layer split, memory per GPU, engine config, or why it does not fit.

    Prints the engine arguments as a `vllm serve` line and as the playbooks' llm_app_engine / rayservice_engine."""
    try:
        spec, base_dir = _model_spec(model)
        inventory_data, limits = _inventory(inventory)
        if gpus or node:
            inventory_data = {**(inventory_data or {}), "nodes": nodes_from_short_forms(gpus, node or ())}
        if network:
            inventory_data = {**(inventory_data or {}), "network": network}
        if inventory_data is None or not inventory_data.get("nodes"):
            raise PlanInputError("no GPUs: give --inventory, --gpus (e.g. 3090,3090) or --node (e.g. 2x3090)")
        overrides = {
            "name": model_name,
            "revision": revision,
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
    command = vllm_serve_command(plan, spec.get("revision"))
    if as_json:
        answer = {"fits": True, "plan": plan.model_dump(mode="json"), "vllm_serve": command}
        typer.echo(json.dumps({**answer, "playbook_vars": playbook_vars(plan)}))
        return
    typer.echo(render_plan(plan, spec.get("context_length"), int(spec.get("concurrency") or _default("concurrency"))))
    typer.echo("\nThe same engine with vLLM alone:\n  " + command)
    typer.echo("\nPlaybook variables (inventory group_vars):\n" + playbook_vars_yaml(plan).rstrip())
