"""Search the layouts vLLM can run on an inventory, pick the fastest that fits, or say why none does.

``layouts`` lists what vLLM accepts, ``sizing`` sizes each layout; this module ranks them, builds the plan
(engine config, Ray worker groups) and, when nothing fits, finds the cheapest changes that would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from lab_llm.plan.errors import DoesNotFitError, FitSuggestion, PlanInputError
from lab_llm.plan.inventory import GpuInventory, Limits, Node, load_inventory, load_limits
from lab_llm.plan.layouts import PlacedGpu, stage_orders, tp_groups, tp_rejection
from lab_llm.plan.memory import GIB, total_weight_bytes
from lab_llm.plan.model import (
    ModelSpec,
    WeightFormat,
    load_model_spec,
    normalise_kv_cache_dtype,
    normalise_weight_dtype,
)
from lab_llm.plan.result import DecodeSpeed, FitPlan, LayoutSummary, WeightsCheck, describe_stages
from lab_llm.plan.sizing import CONTEXT_STEP, MIN_CONTEXT, Evaluation, Request, evaluate, stages_of

WEIGHTS_CHECK_TOLERANCE = 0.03  # quantization side tensors (GPTQ g_idx, fp8 input scales) stay well under this
SPEED_TIE = 0.03  # layouts within 3 % of the fastest count as equally fast; fewer GPUs then win
OFFLOAD_STEP_GIB = 0.5


# ---------------------------------------------------------------------------------------------- inputs


def _weights(
    weights: WeightFormat | str | Mapping[str, Any] | None, group_size: int | None, model: ModelSpec
) -> WeightFormat:
    if weights is None:
        if model.unmodelled_quantization:
            raise PlanInputError(
                f"the checkpoint is quantized with {model.unmodelled_quantization}, which the planner does not model: "
                "give weights (fp16, bf16, fp8, awq or gptq) closest to how it stores its linear layers"
            )
        found = model.checkpoint_weights or WeightFormat(dtype="bf16")
        return found.model_copy(update={"group_size": group_size}) if group_size else found
    if isinstance(weights, WeightFormat):
        return weights
    if isinstance(weights, Mapping):
        dtype = normalise_weight_dtype(str(weights.get("dtype", "bf16")))
        return WeightFormat(
            dtype=dtype,
            bits=int(weights.get("bits", 4)),
            group_size=int(weights.get("group_size", group_size or 128)),
        )
    dtype = normalise_weight_dtype(weights)
    return WeightFormat(dtype=dtype, group_size=group_size or 128)


def _check_request(request: Request) -> None:
    weights = request.weights
    if weights.is_int_quantized and weights.bits not in (4, 8):
        raise PlanInputError(f"{weights.dtype} bits must be 4 or 8, not {weights.bits}")
    if weights.is_int_quantized and weights.group_size not in (-1, 32, 64, 128):
        raise PlanInputError(f"{weights.dtype} group_size must be -1, 32, 64 or 128, not {weights.group_size}")
    if request.concurrency < 1:
        raise PlanInputError(f"concurrency must be at least 1, not {request.concurrency}")
    context, limit = request.context_length, request.model.max_position_embeddings
    if context is not None and context < 1:
        raise PlanInputError(f"context_length must be positive, not {context}")
    if context is not None and limit and context > limit:
        raise PlanInputError(
            f"context_length {context} exceeds the model's max_position_embeddings {limit} "
            "(vLLM refuses a longer max_model_len)"
        )


# ---------------------------------------------------------------------------------------------- search


def _candidates(request: Request) -> tuple[list[Evaluation], list[str]]:
    model, inventory, limits = request.model, request.inventory, request.limits
    per_node = max(len(node.gpus) for node in inventory.nodes)
    total = sum(len(node.gpus) for node in inventory.nodes)
    largest_tp = total if limits.allow_tp_over_network else per_node
    evaluations, rejected = [], []
    for tp in range(1, largest_tp + 1):
        reason = tp_rejection(model, request.weights, tp)
        if reason:
            if tp <= total:
                rejected.append(reason)
            continue
        groups = tp_groups(inventory, tp, limits.allow_tp_over_network)
        for order in stage_orders(groups, model.num_hidden_layers):
            evaluations.append(evaluate(request, tp, order))
    return evaluations, rejected


def _with_offload(request: Request, evaluations: list[Evaluation]) -> list[Evaluation]:
    """The smallest cpu_offload_gb (in 0.5 GiB steps, up to the limit) that makes each layout fit."""
    ceiling = request.limits.cpu_offload_gib
    fitted = []
    for evaluation in evaluations:
        steps = int(ceiling / OFFLOAD_STEP_GIB)
        if not steps or not evaluate(request, evaluation.tp, evaluation.groups, steps * OFFLOAD_STEP_GIB).fits:
            continue
        low, high = 0, steps
        while high - low > 1:
            middle = (low + high) // 2
            if evaluate(request, evaluation.tp, evaluation.groups, middle * OFFLOAD_STEP_GIB).fits:
                high = middle
            else:
                low = middle
        fitted.append(evaluate(request, evaluation.tp, evaluation.groups, high * OFFLOAD_STEP_GIB))
    return fitted


def _rank(fitting: list[Evaluation]) -> list[Evaluation]:
    """Fastest first; within SPEED_TIE of the fastest, fewer GPUs, then the larger KV cache."""

    def speed(e: Evaluation) -> float:
        return e.decode.tokens_per_s if e.decode else 0.0

    by_speed = sorted(fitting, key=lambda e: (-speed(e), e.world_size, -e.kv_tokens))
    fastest = speed(by_speed[0])
    leaders = [e for e in by_speed if speed(e) >= fastest * (1 - SPEED_TIE)]
    leaders.sort(key=lambda e: (e.world_size, -e.kv_tokens, -speed(e)))
    return leaders + [e for e in by_speed if e not in leaders]


def _search(request: Request) -> tuple[list[Evaluation], list[Evaluation], list[str]]:
    evaluations, rejected = _candidates(request)
    fitting = [e for e in evaluations if e.fits]
    if not fitting and request.limits.cpu_offload_gib > 0:
        fitting = _with_offload(request, evaluations)
    return _rank(fitting) if fitting else [], evaluations, rejected


# ---------------------------------------------------------------------------------------------- output


def _engine_config(request: Request, best: Evaluation) -> dict[str, Any]:
    weights = request.weights
    env: dict[str, str] = {}
    if len(best.groups) > 1:
        env["VLLM_PP_LAYER_PARTITION"] = ",".join(str(n) for n in best.partition)
    classes = [g.gpu.gpu_class for group in best.groups for g in group.gpus]
    if len(set(classes)) > 1:
        # Ranks follow the placement bundles in order only when told so (v1/executor/ray_executor_v2.py);
        # otherwise they are sorted by node id and the uneven split could land on the wrong cards.
        env["VLLM_RAY_BUNDLE_INDICES"] = ",".join(str(i) for i in range(len(classes)))
    return {
        "model": request.model.name,
        "served_model_name": request.served_model_name,
        "tensor_parallel_size": best.tp,
        "pipeline_parallel_size": len(best.groups),
        "gpu_memory_utilization": best.utilization,
        "cpu_offload_gb": best.offload_gib,
        "max_model_len": best.max_model_len,
        # Checkpoint formats (AWQ/GPTQ) are read from the checkpoint's quantization_config, where vLLM picks
        # the Marlin kernels itself; naming "awq" here would force the slower plain kernel.
        "dtype": {"fp16": "float16", "bf16": "bfloat16"}.get(weights.dtype, "auto"),
        # A checkpoint's own quantization_config (fp8, compressed-tensors ...) is where vLLM takes the method from,
        # and it refuses a `quantization` argument naming another (vllm/config/model.py _verify_quantization):
        # "fp8" only asks vLLM to quantize a 16-bit checkpoint as it loads.
        "quantization": "fp8" if weights.dtype == "fp8" and not _checkpoint_quantized(request.model) else None,
        "kv_cache_dtype": "fp8" if request.kv_cache_dtype == "fp8" else "auto",
        "enforce_eager": request.limits.enforce_eager,
        "max_num_seqs": request.limits.max_num_seqs,
        "env": env,
    }


def _checkpoint_quantized(model: ModelSpec) -> bool:
    return model.checkpoint_weights is not None or bool(model.unmodelled_quantization)


def _worker_groups(best: Evaluation) -> list[dict[str, Any]]:
    per_node: dict[str, list[PlacedGpu]] = {}
    for group in best.groups:
        for placed in group.gpus:
            per_node.setdefault(placed.node, []).append(placed)
    counts: dict[tuple[str, int], int] = {}
    for cards in per_node.values():
        key = ("+".join(sorted({c.gpu.gpu_class for c in cards})), len(cards))
        counts[key] = counts.get(key, 0) + 1
    return [
        {"gpu_class": gpu_class, "replicas": replicas, "gpus_per_worker": gpus}
        for (gpu_class, gpus), replicas in sorted(counts.items())
    ]


def _summary(request: Request, evaluation: Evaluation) -> LayoutSummary:
    return LayoutSummary(
        tensor_parallel_size=evaluation.tp,
        pipeline_parallel_size=len(evaluation.groups),
        stages=describe_stages(stages_of(request, evaluation), evaluation.tp),
        layer_partition=evaluation.partition,
        kv_cache_tokens=evaluation.kv_tokens,
        max_model_len=evaluation.max_model_len,
        cpu_offload_gb=evaluation.offload_gib,
        decode_tokens_per_s=evaluation.decode.tokens_per_s if evaluation.decode else 0.0,
    )


def weights_check(model: ModelSpec) -> WeightsCheck | None:
    """The weight arithmetic for the checkpoint's own format against its safetensors index, if it has one."""
    if not model.checkpoint_bytes:
        return None
    computed = total_weight_bytes(model, model.checkpoint_weights or WeightFormat(dtype="bf16"))
    difference = (computed - model.checkpoint_bytes) / model.checkpoint_bytes
    return WeightsCheck(
        checkpoint_gib=round(model.checkpoint_bytes / GIB, 2),
        computed_gib=round(computed / GIB, 2),
        difference_percent=round(difference * 100, 1),
        agrees=abs(difference) <= WEIGHTS_CHECK_TOLERANCE,
    )


def _notes(request: Request, best: Evaluation, rejected: list[str], extra: list[str]) -> list[str]:
    notes = list(dict.fromkeys(rejected)) + list(request.model.caveats) + extra
    check = weights_check(request.model)
    if check and not check.agrees:
        notes.append(
            f"The checkpoint's safetensors index holds {check.checkpoint_gib} GiB of tensors; the planner's "
            f"arithmetic for its format gives {check.computed_gib} GiB ({check.difference_percent:+.1f} %). Likely "
            "causes: weights stored as float32, modules the planner does not count (a vision tower, MTP or "
            "draft heads), or config.json fields that do not match the weights. The plan's memory is off by as much."
        )
    if request.kv_cache_dtype == "fp8":
        notes.append("fp8 KV cache on Ampere runs without FlashAttention (vLLM picks another attention backend).")
    if best.offload_gib:
        notes.append(f"cpu_offload_gb={best.offload_gib}: each GPU streams that much weight from CPU RAM every token.")
    if "VLLM_RAY_BUNDLE_INDICES" in _engine_config(request, best)["env"]:
        notes.append(
            "Stages use different cards: create the placement group from ray_placement_bundles, in order, so "
            "VLLM_RAY_BUNDLE_INDICES puts each stage's layers on the card sized for them."
        )
    return notes


def _distinct(ranked: list[Evaluation]) -> list[Evaluation]:
    """The best ordering of each set of cards: the same cards in another stage order are not news."""
    seen, distinct = set(), []
    for evaluation in ranked:
        key = (evaluation.tp, tuple(sorted(g.signature for g in evaluation.groups)), evaluation.offload_gib)
        if key not in seen:
            seen.add(key)
            distinct.append(evaluation)
    return distinct


def _build_plan(request: Request, ranked: list[Evaluation], rejected: list[str], extra: list[str]) -> FitPlan:
    best = ranked[0]
    assert best.decode is not None
    engine = _engine_config(request, best)
    bundles = tuple({"CPU": 1.0, "GPU": 1.0, g.gpu.gpu_class: 1.0} for group in best.groups for g in group.gpus)
    return FitPlan(
        model=request.model.name,
        served_model_name=request.served_model_name,
        weights=request.weights.dtype
        + (f"-{request.weights.bits}bit-g{request.weights.group_size}" if request.weights.is_int_quantized else ""),
        kv_cache_dtype=request.kv_cache_dtype,
        tensor_parallel_size=best.tp,
        pipeline_parallel_size=len(best.groups),
        stages=tuple(stages_of(request, best)),
        layer_partition=best.partition,
        gpu_memory_utilization=best.utilization,
        max_model_len=best.max_model_len,
        kv_cache_tokens=best.kv_tokens,
        max_concurrency=round(best.kv_tokens / best.max_model_len, 2),
        cpu_offload_gb=best.offload_gib,
        gpus=tuple(best.budgets),
        decode=DecodeSpeed(
            tokens_per_s=best.decode.tokens_per_s,
            memory_ms=best.decode.memory_ms,
            communication_ms=best.decode.communication_ms,
            overhead_ms=best.decode.overhead_ms,
        ),
        engine_config=engine,
        worker_groups=tuple(_worker_groups(best)),
        ray_placement_bundles=bundles,
        alternatives=tuple(_summary(request, e) for e in _distinct(ranked)[1:6]),
        notes=tuple(_notes(request, best, rejected, extra)),
        weights_check=weights_check(request.model),
        model_source=request.model.source,
    )


# ---------------------------------------------------------------------------------------------- no fit


def _reasons(request: Request, evaluations: list[Evaluation], rejected: list[str]) -> list[str]:
    reasons = []
    if not evaluations:
        reasons.append("no tensor-parallel size is possible on these nodes: " + "; ".join(rejected))
        return reasons
    sized = [e for e in evaluations if e.partition]
    if sized:
        closest = max(sized, key=lambda e: (e.kv_tokens, -e.world_size))
    else:
        # Nothing even holds the weights: report the layout with the most memory.
        closest = max(evaluations, key=lambda e: (e.world_size, e.reason))
    reasons.append(closest.reason)
    return reasons


def _fits(request: Request) -> Evaluation | None:
    ranked, _, _ = _search(request)
    return ranked[0] if ranked else None


def _variants(
    request: Request, evaluations: list[Evaluation]
) -> list[tuple[str, int, Request, Callable[[Evaluation], str]]]:
    """The changes worth trying, ``(name, cost_rank, changed request, text of the change given what fits)``."""
    variants: list[tuple[str, int, Request, Callable[[Evaluation], str]]] = []
    longest = max((e.kv_tokens // max(1, request.concurrency) for e in evaluations if e.partition), default=0)
    wanted = request.context_length or MIN_CONTEXT
    if longest >= CONTEXT_STEP and longest < wanted:
        context = longest // CONTEXT_STEP * CONTEXT_STEP
        concurrent = f" (x{request.concurrency} concurrent)" if request.concurrency > 1 else ""
        text = f"max_model_len {context} instead of {wanted}{concurrent}"
        variants.append(("shorter_context", 1, replace(request, context_length=context), lambda _found: text))
    if request.kv_cache_dtype != "fp8":
        variants.append(
            (
                "fp8_kv_cache",
                2,
                replace(request, kv_cache_dtype="fp8"),
                lambda _found: "kv_cache_dtype fp8 (halves the KV cache per token)",
            )
        )
    if not request.weights.is_int_quantized:
        variants.append(
            (
                "weights_4bit",
                3,
                replace(request, weights=WeightFormat(dtype="awq", bits=4, group_size=128)),
                lambda _found: "a 4-bit AWQ/GPTQ checkpoint (group size 128) of the same model",
            )
        )
    if request.limits.cpu_offload_gib == 0:
        variants.append(
            (
                "cpu_offload",
                4,
                replace(request, limits=request.limits.model_copy(update={"cpu_offload_gib": 64.0})),
                lambda found: (
                    f"cpu_offload_gb {found.offload_gib} per GPU (slow: weights cross PCIe every token, "
                    f"about {found.decode.tokens_per_s if found.decode else 0} tok/s)"
                ),
            )
        )
    largest = max((g for node in request.inventory.nodes for g in node.gpus), key=lambda g: g.total_gib)
    extra = Node(name="one-more-gpu", gpus=(largest,))
    grown = request.inventory.model_copy(update={"nodes": (*request.inventory.nodes, extra)})
    variants.append(
        (
            "one_more_gpu",
            5,
            replace(request, inventory=grown),
            lambda _found: f"one more {largest.gpu_class} in its own node",
        )
    )
    return variants


def _suggestions(request: Request, evaluations: list[Evaluation]) -> list[FitSuggestion]:
    """Each change that makes the model fit, cheapest first, with the layout it would get."""
    suggestions = []
    for name, rank, variant, text in _variants(request, evaluations):
        found = _fits(variant)
        if found:
            suggestions.append(
                FitSuggestion(name, text(found), rank, describe_stages(stages_of(request, found), found.tp))
            )
    return suggestions  # _variants lists them cheapest first


# ---------------------------------------------------------------------------------------------- entry


def plan_fit(
    model: ModelSpec | Mapping[str, Any] | str | Path,
    inventory: GpuInventory | Mapping[str, Any] | str | Path,
    *,
    weights: WeightFormat | str | Mapping[str, Any] | None = None,
    group_size: int | None = None,
    kv_cache_dtype: str = "auto",
    context_length: int | None = None,
    concurrency: int = 1,
    limits: Limits | Mapping[str, Any] | None = None,
    model_name: str | None = None,
    served_model_name: str | None = None,
    revision: str | None = None,
    notes: tuple[str, ...] = (),
) -> FitPlan:
    """The fastest vLLM layout of ``model`` on ``inventory`` that fits, or DoesNotFitError saying why and
    what would fit; PlanInputError for bad input. See the package docstring for the arguments; ``notes`` are
    added to the plan's (e.g. how the inventory was put together)."""
    spec = load_model_spec(model, name=model_name, revision=revision)
    request = Request(
        model=spec,
        weights=_weights(weights, group_size, spec),
        kv_cache_dtype=normalise_kv_cache_dtype(kv_cache_dtype),
        context_length=context_length,
        concurrency=concurrency,
        inventory=load_inventory(inventory),
        limits=load_limits(limits),
        served_model_name=served_model_name or spec.name.rstrip("/").split("/")[-1],
    )
    _check_request(request)
    ranked, evaluations, rejected = _search(request)
    if not ranked:
        raise DoesNotFitError(
            _reasons(request, evaluations, rejected), _suggestions(request, evaluations), list(request.model.caveats)
        )
    return _build_plan(request, ranked, rejected, list(notes))
