"""Search the layouts vLLM can run on an inventory, size each one, and pick the fastest that fits.

Rules taken from vLLM 0.32 (paths under vllm/):
- TP divides the attention heads (``ModelConfig.verify_with_parallel_config``, config/model.py) and either
  divides the KV heads or is a multiple of them (``QKVParallelLinear``, model_executor/layers/linear.py:
  ``divide(tp_size, total_num_kv_heads)`` or ``divide(total_num_kv_heads, tp_size)``).
- 4-bit Marlin kernels need each TP shard's input rows to be whole quantization groups
  (``check_marlin_supports_layer``, model_executor/layers/quantization/utils/marlin_utils.py).
- One ``gpu_memory_utilization`` for every worker; each requests ``total x utilization``
  (``request_memory``, v1/worker/utils.py) and the KV cache gets that minus weights, activations and
  non-torch memory (``Worker.determine_available_memory``, v1/worker/gpu_worker.py). The engine then gives every
  worker the smallest worker's number of blocks (``get_kv_cache_configs``, v1/core/kv_cache_utils.py: "Change
  the num_blocks of each rank to the smallest among all ranks"), one of which the block pool keeps as its
  null block. So the most constrained card of the whole engine sets the KV cache size.
- ``VLLM_PP_LAYER_PARTITION`` is a comma-separated count of layers per stage that must have ``pp`` entries
  summing to ``num_hidden_layers`` (``get_pp_indices``, distributed/utils.py).
- TP stays inside a node (its all-reduces run twice per layer) unless the user allows it over the network;
  PP stages may sit on different nodes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lab_llm.plan.errors import DoesNotFitError, FitSuggestion, PlanInputError
from lab_llm.plan.inventory import Gpu, GpuInventory, Limits, Link, Node, load_inventory, load_limits
from lab_llm.plan.memory import (
    BLOCK_SIZE,
    DEFAULT_OVERHEADS,
    GIB,
    Overheads,
    activation_peak_bytes,
    edge_weights,
    kv_bytes_per_token_per_layer,
    layer_weights,
    sampler_bytes,
    vocab_matrix_bytes,
)
from lab_llm.plan.model import (
    ModelSpec,
    WeightFormat,
    load_model_spec,
    normalise_kv_cache_dtype,
    normalise_weight_dtype,
)
from lab_llm.plan.performance import (
    PERF_CONTEXT_TOKENS,
    DecodeEstimate,
    StageTraffic,
    estimate_decode,
    offload_bytes,
)
from lab_llm.plan.result import (
    DecodeSpeed,
    FitPlan,
    GpuBudget,
    GpuRef,
    LayoutSummary,
    Stage,
    describe_stages,
)

MIN_CONTEXT = 4096  # what "the longest context that fits" must at least reach when no context is asked for
CONTEXT_STEP = 1024  # a found max_model_len is rounded down to this
SPEED_TIE = 0.03  # layouts within 3 % of the fastest count as equally fast; fewer GPUs then win
MAX_GROUPS = 12  # TP groups considered; beyond, only the largest cards
OFFLOAD_STEP_GIB = 0.5


@dataclass(frozen=True)
class PlacedGpu:
    node: str
    index: int
    gpu: Gpu

    @property
    def ref(self) -> GpuRef:
        return GpuRef(node=self.node, index=self.index, gpu_class=self.gpu.gpu_class)


@dataclass(frozen=True)
class TpGroup:
    gpus: tuple[PlacedGpu, ...]
    link: Link

    @property
    def signature(self) -> tuple[Any, ...]:
        return tuple(sorted((g.gpu.gpu_class, g.gpu.total_gib, g.gpu.bandwidth) for g in self.gpus))

    @property
    def nodes(self) -> frozenset[str]:
        return frozenset(g.node for g in self.gpus)


@dataclass(frozen=True)
class Request:
    model: ModelSpec
    weights: WeightFormat
    kv_cache_dtype: str
    context_length: int | None
    concurrency: int
    inventory: GpuInventory
    limits: Limits
    served_model_name: str
    overheads: Overheads = DEFAULT_OVERHEADS


@dataclass
class Evaluation:
    """One ordered layout, sized."""

    tp: int
    groups: tuple[TpGroup, ...]
    utilization: float
    fits: bool
    reason: str = ""
    partition: tuple[int, ...] = ()
    kv_tokens: int = 0
    max_model_len: int = 0
    offload_gib: float = 0.0
    decode: DecodeEstimate | None = None
    budgets: list[GpuBudget] = field(default_factory=list)

    @property
    def world_size(self) -> int:
        return self.tp * len(self.groups)


# ---------------------------------------------------------------------------------------------- inputs


def _weights(
    weights: WeightFormat | str | Mapping[str, Any] | None, group_size: int | None, model: ModelSpec
) -> WeightFormat:
    if weights is None:
        found = model.checkpoint_weights or WeightFormat(dtype="bf16")
        return found.model_copy(update={"group_size": group_size}) if group_size else found
    if isinstance(weights, WeightFormat):
        return weights
    if isinstance(weights, Mapping):
        dtype = normalise_weight_dtype(str(weights.get("dtype", "bf16")))
        return WeightFormat(
            dtype=dtype,  # type: ignore[arg-type]
            bits=int(weights.get("bits", 4)),
            group_size=int(weights.get("group_size", group_size or 128)),
        )
    dtype = normalise_weight_dtype(weights)
    return WeightFormat(dtype=dtype, group_size=group_size or 128)  # type: ignore[arg-type]


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


# ---------------------------------------------------------------------------------------------- TP rules


def tp_rejection(model: ModelSpec, weights: WeightFormat, tp: int) -> str:
    """Why vLLM would refuse this TP size for the model, or '' when it accepts it."""
    if model.num_attention_heads % tp:
        return f"TP={tp} does not divide the {model.num_attention_heads} attention heads"
    if model.kv_heads % tp and tp % model.kv_heads:
        return f"TP={tp} neither divides nor is a multiple of the {model.kv_heads} KV heads"
    width = model.expert_intermediate_size
    if width % tp:
        return f"TP={tp} does not divide the intermediate size {width}"
    if weights.is_int_quantized and weights.group_size > 0 and tp > 1:
        group = weights.group_size
        if (width // tp) % group or (model.num_attention_heads * model.head_size // tp) % group:
            return f"TP={tp} splits {weights.dtype} quantization groups of {group} rows"
    return ""


def _tp_groups(inventory: GpuInventory, tp: int, allow_network: bool) -> list[TpGroup]:
    """Groups of ``tp`` GPUs: inside a node (similar cards together), or across nodes when allowed."""
    groups: list[TpGroup] = []
    for node in inventory.nodes:
        cards = sorted(
            (PlacedGpu(node.name, i, gpu) for i, gpu in enumerate(node.gpus)),
            key=lambda g: (-g.gpu.total_gib, g.index),
        )
        groups += [TpGroup(tuple(cards[i : i + tp]), node.link) for i in range(0, len(cards) - tp + 1, tp)]
    if allow_network and tp > 1:
        every = sorted(
            (PlacedGpu(node.name, i, gpu) for node in inventory.nodes for i, gpu in enumerate(node.gpus)),
            key=lambda g: (-g.gpu.total_gib, g.node, g.index),
        )
        for i in range(0, len(every) - tp + 1, tp):
            cards = tuple(every[i : i + tp])
            if len({g.node for g in cards}) > 1:
                groups.append(TpGroup(cards, inventory.network))
    return groups


def _disjoint(groups: tuple[TpGroup, ...]) -> bool:
    seen = [(g.node, g.index) for group in groups for g in group.gpus]
    return len(seen) == len(set(seen))


def _orders(chosen: tuple[TpGroup, ...]) -> Iterator[tuple[TpGroup, ...]]:
    """Only the ends of a pipeline differ in memory (embeddings first; lm_head and the sampler last) and stages
    run one after the other, so every distinct first and last stage is tried, the middle largest cards first."""
    if len(chosen) == 1:
        yield chosen
        return
    seen: set[tuple[Any, ...]] = set()
    for i, first in enumerate(chosen):
        for j, last in enumerate(chosen):
            if i == j:
                continue
            middle = sorted((g for k, g in enumerate(chosen) if k not in (i, j)), key=lambda g: g.signature)
            order = (first, *reversed(middle), last)
            key = tuple(g.signature for g in order)
            if key not in seen:
                seen.add(key)
                yield order


def _stage_orders(groups: list[TpGroup], max_stages: int) -> Iterator[tuple[TpGroup, ...]]:
    """Distinct sets of stages (groups with equal cards are interchangeable), each in the orders that matter."""
    if len(groups) > MAX_GROUPS:
        # Large inventories: the candidates are the largest cards.
        groups = sorted(groups, key=lambda g: g.signature, reverse=True)[:MAX_GROUPS]
    seen: set[tuple[Any, ...]] = set()
    for pp in range(1, min(len(groups), max_stages) + 1):
        for chosen in itertools.combinations(groups, pp):
            key = tuple(sorted(g.signature for g in chosen))
            if key in seen or not _disjoint(chosen):
                continue
            seen.add(key)
            yield from _orders(chosen)


# ---------------------------------------------------------------------------------------------- sizing


def _utilization(request: Request, gpus: list[PlacedGpu]) -> float:
    """The ceiling, lowered so that every card keeps room for its CUDA context outside the budget."""
    ceiling = request.limits.gpu_memory_utilization
    for placed in gpus:
        total = placed.gpu.total_gib
        ceiling = min(ceiling, (total - request.overheads.cuda_context_gib) / total)
    return math.floor(ceiling * 100) / 100


def _fixed_bytes(request: Request, tp: int, first: bool, last: bool, world: int) -> dict[str, int]:
    """Per rank of a stage: what does not depend on the number of layers."""
    model, limits, overheads = request.model, request.limits, request.overheads
    activations = activation_peak_bytes(model, tp, limits.max_num_batched_tokens)
    if last:
        activations += sampler_bytes(model, limits.max_num_seqs, overheads)
    overhead_gib = overheads.non_torch_gib + overheads.safety_margin_gib
    if world > 1:
        overhead_gib += overheads.communication_gib
    if not limits.enforce_eager:
        overhead_gib += overheads.cuda_graphs_gib
    return {
        "edge": edge_weights(model, tp, first, last),
        "activations": activations,
        "overhead": int(overhead_gib * GIB),
    }


def _split_layers(budgets: list[int], layer_bytes: int, kv_layer_bytes: int, layers: int) -> tuple[int, ...]:
    """Layers per stage that maximise the smallest stage's KV capacity (tokens): the largest X for which the
    stages can hold all layers with room for X tokens each, then the surplus taken off the fullest stages."""

    def capacities(tokens: int) -> list[int]:
        return [min(layers, max(0, budget // (layer_bytes + tokens * kv_layer_bytes))) for budget in budgets]

    def feasible(tokens: int) -> bool:
        caps = capacities(tokens)
        return min(caps) >= 1 and sum(caps) >= layers

    if not feasible(0):
        return ()
    low, high = 0, 1
    while feasible(high) and high < 1 << 40:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if feasible(middle) else (low, middle)
    caps = capacities(low)
    while sum(caps) > layers:
        # Every stage holds `low` tokens; drop a layer where it raises the smallest capacity: the stage that
        # is the bottleneck now (fewest tokens for its layers), the later one on ties.
        def tokens(i: int) -> float:
            return (budgets[i] - caps[i] * layer_bytes) / (caps[i] * kv_layer_bytes)

        target = min((i for i in range(len(caps)) if caps[i] > 1), key=lambda i: (tokens(i), -i))
        caps[target] -= 1
    return tuple(caps)


def _evaluate(request: Request, tp: int, groups: tuple[TpGroup, ...], offload_gib: float = 0.0) -> Evaluation:
    model = request.model
    pp, world = len(groups), tp * len(groups)
    gpus = [g for group in groups for g in group.gpus]
    utilization = _utilization(request, gpus)
    layer = layer_weights(model, request.weights, tp)
    kv_layer = kv_bytes_per_token_per_layer(model, tp, request.kv_cache_dtype)
    offload = offload_bytes(offload_gib)

    fixed = [_fixed_bytes(request, tp, s == 0, s == pp - 1, world) for s in range(pp)]
    budgets = []
    for s, group in enumerate(groups):
        smallest = min(int(utilization * g.gpu.total_gib * GIB) for g in group.gpus)
        budgets.append(smallest - sum(fixed[s].values()) + offload)
    evaluation = Evaluation(tp=tp, groups=groups, utilization=utilization, fits=False, offload_gib=offload_gib)
    partition = _split_layers(budgets, layer.total, kv_layer, model.num_hidden_layers)
    if not partition:
        total_need = model.num_hidden_layers * layer.total + sum(f["edge"] for f in fixed)
        evaluation.reason = (
            f"the weights need {total_need / GIB:.2f} GiB per TP rank; the {world} GPU(s) of "
            f"TP={tp} PP={pp} have {sum(max(0, b) for b in budgets) / GIB:.2f} GiB per TP rank left after "
            "activations and overheads"
        )
        return evaluation
    blocks = min((budgets[s] - n * layer.total) // (BLOCK_SIZE * n * kv_layer) for s, n in enumerate(partition))
    kv_tokens = max(0, blocks - 1) * BLOCK_SIZE  # the block pool keeps one null block
    evaluation.partition, evaluation.kv_tokens = partition, kv_tokens
    evaluation.max_model_len = _max_model_len(request, kv_tokens)
    needed = (request.context_length or min(MIN_CONTEXT, model.max_position_embeddings or MIN_CONTEXT)) * max(
        1, request.concurrency
    )
    if kv_tokens < needed:
        evaluation.reason = (
            f"{describe_stages(_stages(request, evaluation), tp)} leaves a KV cache of {kv_tokens} tokens "
            f"({kv_layer * max(partition) / 1024:.0f} KiB per token on the fullest stage's cards); "
            f"{needed} are needed"
        )
        return evaluation
    evaluation.fits = True
    evaluation.decode = _decode(request, tp, groups, partition, offload)
    evaluation.budgets = _budgets(request, evaluation, fixed, layer.total, kv_layer, blocks)
    return evaluation


def _max_model_len(request: Request, kv_tokens: int) -> int:
    if request.context_length:
        return request.context_length
    per_request = kv_tokens // max(1, request.concurrency)
    limit = request.model.max_position_embeddings or per_request
    longest = min(limit, per_request)
    return longest if longest == limit else max(BLOCK_SIZE, longest // CONTEXT_STEP * CONTEXT_STEP)


def _decode(
    request: Request, tp: int, groups: tuple[TpGroup, ...], partition: tuple[int, ...], offload: int
) -> DecodeEstimate:
    model = request.model
    layer = layer_weights(model, request.weights, tp)
    read_per_layer = layer.dense_bytes
    if model.is_moe:
        read_per_layer += layer.expert_bytes * model.num_experts_per_tok // model.num_local_experts
    kv_layer = kv_bytes_per_token_per_layer(model, tp, request.kv_cache_dtype)
    stages, hand_offs = [], []
    for s, (group, layers) in enumerate(zip(groups, partition, strict=True)):
        last = s == len(groups) - 1
        read = layers * (read_per_layer + kv_layer * PERF_CONTEXT_TOKENS)
        if last:
            read += vocab_matrix_bytes(model, tp)
        stages.append(
            StageTraffic(
                bytes_read=read,
                bandwidth_gbs=min(g.gpu.bandwidth for g in group.gpus),
                offloaded_bytes=offload,
                all_reduces=2 * layers,
                all_reduce_bytes=model.hidden_size * 2,
                tp=tp,
                tp_link_bandwidth_gbs=group.link.bandwidth,
                tp_link_latency_us=group.link.latency,
            )
        )
        if not last:
            following = groups[s + 1]
            same_node = group.nodes == following.nodes and len(group.nodes) == 1
            link = group.link if same_node else request.inventory.network
            # vLLM's pipeline hands over hidden_states and residual (IntermediateTensors) per token.
            hand_offs.append((2 * model.hidden_size * 2 // tp, link.bandwidth, link.latency))
    return estimate_decode(stages, hand_offs)


def _stages(request: Request, evaluation: Evaluation) -> list[Stage]:
    stages, start = [], 0
    partition = evaluation.partition or tuple(0 for _ in evaluation.groups)
    for s, (group, layers) in enumerate(zip(evaluation.groups, partition, strict=True)):
        stages.append(
            Stage(
                index=s,
                gpus=tuple(g.ref for g in group.gpus),
                layers=layers,
                first_layer=start,
                end_layer=start + layers,
                embeddings=s == 0 or (request.model.tie_word_embeddings and s == len(partition) - 1),
                lm_head=s == len(partition) - 1,
                max_gpu_memory_utilization=_utilization(request, list(group.gpus)),
            )
        )
        start += layers
    return stages


def _budgets(
    request: Request,
    evaluation: Evaluation,
    fixed: list[dict[str, int]],
    layer_bytes: int,
    kv_layer: int,
    blocks: int,
) -> list[GpuBudget]:
    rows = []
    for s, (group, layers) in enumerate(zip(evaluation.groups, evaluation.partition, strict=True)):
        for rank, placed in enumerate(group.gpus):
            offload = offload_bytes(evaluation.offload_gib)
            weights = layers * layer_bytes + fixed[s]["edge"] - offload
            kv = blocks * BLOCK_SIZE * layers * kv_layer
            activations = fixed[s]["activations"]
            overhead = fixed[s]["overhead"]
            total = placed.gpu.total_gib * GIB
            rows.append(
                GpuBudget(
                    node=placed.node,
                    index=placed.index,
                    gpu_class=placed.gpu.gpu_class,
                    stage=s,
                    tp_rank=rank,
                    total=round(placed.gpu.total_gib, 2),
                    weights=round(weights / GIB, 2),
                    kv_cache=round(kv / GIB, 2),
                    activations=round(activations / GIB, 2),
                    overhead=round(overhead / GIB, 2),
                    free=round((total - weights - kv - activations - overhead) / GIB, 2),
                    offloaded_to_cpu=round(offload / GIB, 2),
                )
            )
    return rows


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
        groups = _tp_groups(inventory, tp, limits.allow_tp_over_network)
        for order in _stage_orders(groups, model.num_hidden_layers):
            evaluations.append(_evaluate(request, tp, order))
    return evaluations, rejected


def _with_offload(request: Request, evaluations: list[Evaluation]) -> list[Evaluation]:
    """The smallest cpu_offload_gb (in 0.5 GiB steps, up to the limit) that makes each layout fit."""
    ceiling = request.limits.cpu_offload_gib
    fitted = []
    for evaluation in evaluations:
        steps = int(ceiling / OFFLOAD_STEP_GIB)
        if not steps or not _evaluate(request, evaluation.tp, evaluation.groups, steps * OFFLOAD_STEP_GIB).fits:
            continue
        low, high = 0, steps
        while high - low > 1:
            middle = (low + high) // 2
            if _evaluate(request, evaluation.tp, evaluation.groups, middle * OFFLOAD_STEP_GIB).fits:
                high = middle
            else:
                low = middle
        fitted.append(_evaluate(request, evaluation.tp, evaluation.groups, high * OFFLOAD_STEP_GIB))
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
        "quantization": "fp8" if weights.dtype == "fp8" else None,
        "kv_cache_dtype": "fp8" if request.kv_cache_dtype == "fp8" else "auto",
        "enforce_eager": request.limits.enforce_eager,
        "max_num_seqs": request.limits.max_num_seqs,
        "env": env,
    }


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
        stages=describe_stages(_stages(request, evaluation), evaluation.tp),
        layer_partition=evaluation.partition,
        kv_cache_tokens=evaluation.kv_tokens,
        max_model_len=evaluation.max_model_len,
        cpu_offload_gb=evaluation.offload_gib,
        decode_tokens_per_s=evaluation.decode.tokens_per_s if evaluation.decode else 0.0,
    )


def _notes(request: Request, best: Evaluation, rejected: list[str]) -> list[str]:
    notes = list(dict.fromkeys(rejected)) + list(request.model.caveats)
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


def _build_plan(request: Request, ranked: list[Evaluation], rejected: list[str]) -> FitPlan:
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
        stages=tuple(_stages(request, best)),
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
        notes=tuple(_notes(request, best, rejected)),
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


def _suggestions(request: Request, evaluations: list[Evaluation]) -> list[FitSuggestion]:
    suggestions = []
    longest = max((e.kv_tokens // max(1, request.concurrency) for e in evaluations if e.partition), default=0)
    wanted = request.context_length or MIN_CONTEXT
    if longest >= CONTEXT_STEP and longest < wanted:
        context = longest // CONTEXT_STEP * CONTEXT_STEP
        found = _fits(replace(request, context_length=context))
        if found:
            suggestions.append(
                FitSuggestion(
                    "shorter_context",
                    f"max_model_len {context} instead of {wanted}"
                    + (f" (x{request.concurrency} concurrent)" if request.concurrency > 1 else ""),
                    1,
                    describe_stages(_stages(request, found), found.tp),
                )
            )
    if request.kv_cache_dtype != "fp8":
        found = _fits(replace(request, kv_cache_dtype="fp8"))
        if found:
            suggestions.append(
                FitSuggestion(
                    "fp8_kv_cache",
                    "kv_cache_dtype fp8 (halves the KV cache per token)",
                    2,
                    describe_stages(_stages(request, found), found.tp),
                )
            )
    if not request.weights.is_int_quantized:
        found = _fits(replace(request, weights=WeightFormat(dtype="awq", bits=4, group_size=128)))
        if found:
            suggestions.append(
                FitSuggestion(
                    "weights_4bit",
                    "a 4-bit AWQ/GPTQ checkpoint (group size 128) of the same model",
                    3,
                    describe_stages(_stages(request, found), found.tp),
                )
            )
    if request.limits.cpu_offload_gib == 0:
        offloading = replace(request, limits=request.limits.model_copy(update={"cpu_offload_gib": 64.0}))
        found = _fits(offloading)
        if found:
            suggestions.append(
                FitSuggestion(
                    "cpu_offload",
                    f"cpu_offload_gb {found.offload_gib} per GPU (slow: weights cross PCIe every token, "
                    f"about {found.decode.tokens_per_s if found.decode else 0} tok/s)",
                    4,
                    describe_stages(_stages(request, found), found.tp),
                )
            )
    largest = max((g for node in request.inventory.nodes for g in node.gpus), key=lambda g: g.total_gib)
    extra = Node(name="one-more-gpu", gpus=(largest,))
    grown = request.inventory.model_copy(update={"nodes": (*request.inventory.nodes, extra)})
    found = _fits(replace(request, inventory=grown))
    if found:
        suggestions.append(
            FitSuggestion(
                "one_more_gpu",
                f"one more {largest.gpu_class} in its own node",
                5,
                describe_stages(_stages(request, found), found.tp),
            )
        )
    return sorted(suggestions, key=lambda s: s.cost_rank)


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
) -> FitPlan:
    """The fastest vLLM layout of ``model`` on ``inventory`` that fits, or DoesNotFitError saying why and
    what would fit; PlanInputError for bad input. See the package docstring for the arguments."""
    spec = load_model_spec(model, name=model_name)
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
        raise DoesNotFitError(_reasons(request, evaluations, rejected), _suggestions(request, evaluations))
    return _build_plan(request, ranked, rejected)
