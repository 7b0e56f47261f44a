"""Which layouts vLLM can run: tensor-parallel sizes the model allows, TP groups of GPUs, orders of stages.

Rules taken from vLLM 0.32 (paths under vllm/):
- TP divides the attention heads (``ModelConfig.verify_with_parallel_config``, config/model.py) and either
  divides the KV heads or is a multiple of them (``QKVParallelLinear``, model_executor/layers/linear.py:
  ``divide(tp_size, total_num_kv_heads)`` or ``divide(total_num_kv_heads, tp_size)``).
- 4-bit Marlin kernels need each TP shard's input rows to be whole quantization groups
  (``check_marlin_supports_layer``, model_executor/layers/quantization/utils/marlin_utils.py).
- TP stays inside a node (its all-reduces run twice per layer) unless the user allows it over the network;
  PP stages may sit on different nodes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lab_llm.plan.inventory import Gpu, GpuInventory, Link
from lab_llm.plan.model import ModelSpec, WeightFormat
from lab_llm.plan.result import GpuRef

MAX_GROUPS = 12  # TP groups considered; beyond, only the largest cards


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


def tp_groups(inventory: GpuInventory, tp: int, allow_network: bool) -> list[TpGroup]:
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
            spanning = tuple(every[i : i + tp])
            if len({g.node for g in spanning}) > 1:
                groups.append(TpGroup(spanning, inventory.network))
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


def stage_orders(groups: list[TpGroup], max_stages: int) -> Iterator[tuple[TpGroup, ...]]:
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
