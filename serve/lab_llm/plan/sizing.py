"""Size one layout: layers per stage, the KV cache it leaves, memory per GPU, decode speed.

Rules taken from vLLM 0.32 (paths under vllm/):
- One ``gpu_memory_utilization`` for every worker; each requests ``total x utilization``
  (``request_memory``, v1/worker/utils.py) and the KV cache gets that minus weights, activations and
  non-torch memory (``Worker.determine_available_memory``, v1/worker/gpu_worker.py). The engine then gives every
  worker the smallest worker's number of blocks (``get_kv_cache_configs``, v1/core/kv_cache_utils.py: "Change
  the num_blocks of each rank to the smallest among all ranks"), one of which the block pool keeps as its
  null block. So the most constrained card of the whole engine sets the KV cache size.
- ``VLLM_PP_LAYER_PARTITION`` is a comma-separated count of layers per stage that must have ``pp`` entries
  summing to ``num_hidden_layers`` (``get_pp_indices``, distributed/utils.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lab_llm.plan.inventory import GpuInventory, Limits
from lab_llm.plan.layouts import PlacedGpu, TpGroup
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
from lab_llm.plan.model import ModelSpec, WeightFormat
from lab_llm.plan.performance import (
    PERF_CONTEXT_TOKENS,
    DecodeEstimate,
    StageTraffic,
    estimate_decode,
    offload_bytes,
)
from lab_llm.plan.result import GpuBudget, Stage, describe_stages

MIN_CONTEXT = 4096  # what "the longest context that fits" must at least reach when no context is asked for
CONTEXT_STEP = 1024  # a found max_model_len is rounded down to this


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


def allowed_utilization(request: Request, gpus: list[PlacedGpu]) -> float:
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


def split_layers(budgets: list[int], layer_bytes: int, kv_layer_bytes: int, layers: int) -> tuple[int, ...]:
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


def evaluate(request: Request, tp: int, groups: tuple[TpGroup, ...], offload_gib: float = 0.0) -> Evaluation:
    model = request.model
    pp, world = len(groups), tp * len(groups)
    gpus = [g for group in groups for g in group.gpus]
    utilization = allowed_utilization(request, gpus)
    layer = layer_weights(model, request.weights, tp)
    kv_layer = kv_bytes_per_token_per_layer(model, tp, request.kv_cache_dtype)
    offload = offload_bytes(offload_gib)

    fixed = [_fixed_bytes(request, tp, s == 0, s == pp - 1, world) for s in range(pp)]
    budgets = []
    for s, group in enumerate(groups):
        smallest = min(int(utilization * g.gpu.total_gib * GIB) for g in group.gpus)
        budgets.append(smallest - sum(fixed[s].values()) + offload)
    evaluation = Evaluation(tp=tp, groups=groups, utilization=utilization, fits=False, offload_gib=offload_gib)
    partition = split_layers(budgets, layer.total, kv_layer, model.num_hidden_layers)
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
            f"{describe_stages(stages_of(request, evaluation), tp)} leaves a KV cache of {kv_tokens} tokens "
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


def stages_of(request: Request, evaluation: Evaluation) -> list[Stage]:
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
                max_gpu_memory_utilization=allowed_utilization(request, list(group.gpus)),
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
