"""What a plan is: the layout, the numbers behind it, and the configs it feeds (engine, Ray workers)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class GpuRef(_Frozen):
    node: str
    index: int
    gpu_class: str


class Stage(_Frozen):
    """One pipeline stage: a TP group of GPUs and the decoder layers it runs, ``[first_layer, end_layer)``."""

    index: int
    gpus: tuple[GpuRef, ...]
    layers: int
    first_layer: int
    end_layer: int
    embeddings: bool
    lm_head: bool
    max_gpu_memory_utilization: float
    """What this TP group's smallest card allows (its CUDA context stays outside); the engine uses the lowest."""


class GpuBudget(_Frozen):
    """Where one card's memory goes, in GiB. ``free`` = total - weights - kv_cache - activations - overhead;
    it holds the CUDA context and what gpu_memory_utilization leaves out."""

    node: str
    index: int
    gpu_class: str
    stage: int
    tp_rank: int
    total: float
    weights: float
    kv_cache: float
    activations: float
    overhead: float
    free: float
    offloaded_to_cpu: float


class DecodeSpeed(_Frozen):
    tokens_per_s: float
    memory_ms: float
    communication_ms: float
    overhead_ms: float
    """Engine overhead, plus a fixed cost per boundary between pipeline stages (lab_llm.plan.performance)."""


class WeightsCheck(_Frozen):
    """The planner's weight arithmetic against the checkpoint's safetensors index (``metadata.total_size``)."""

    checkpoint_gib: float
    """What the checkpoint stores (every tensor of its safetensors files)."""
    computed_gib: float
    """What the planner's arithmetic gives for the checkpoint's own format, on one GPU (TP=1, PP=1)."""
    difference_percent: float
    """(computed - checkpoint) / checkpoint x 100."""
    agrees: bool
    """Within ``WEIGHTS_CHECK_TOLERANCE``."""


class LayoutSummary(_Frozen):
    """Another layout that also fits, for comparison."""

    tensor_parallel_size: int
    pipeline_parallel_size: int
    stages: str
    layer_partition: tuple[int, ...]
    kv_cache_tokens: int
    max_model_len: int
    cpu_offload_gb: float
    decode_tokens_per_s: float


class FitPlan(_Frozen):
    model: str
    served_model_name: str
    weights: str
    kv_cache_dtype: str
    tensor_parallel_size: int
    pipeline_parallel_size: int
    stages: tuple[Stage, ...]
    layer_partition: tuple[int, ...]
    gpu_memory_utilization: float
    max_model_len: int
    kv_cache_tokens: int
    max_concurrency: float
    """How many requests of max_model_len tokens the KV cache holds at once."""
    cpu_offload_gb: float
    gpus: tuple[GpuBudget, ...]
    decode: DecodeSpeed
    engine_config: dict[str, Any]
    worker_groups: tuple[dict[str, Any], ...]
    ray_placement_bundles: tuple[dict[str, float], ...]
    alternatives: tuple[LayoutSummary, ...]
    notes: tuple[str, ...]
    weights_check: WeightsCheck | None = None
    """None when the checkpoint has no safetensors index (or the model came as config fields)."""
    model_source: str = ""
    """Where config.json was read: a path, ``hub:ORG/NAME@commit``, or empty for config fields."""

    def layout(self) -> str:
        return describe_stages(self.stages, self.tensor_parallel_size)


def describe_stages(stages: tuple[Stage, ...] | list[Stage], tp: int) -> str:
    """``TP=1 PP=2: rtx-3090[20] -> rtx-3090[20]`` style one-liner."""
    parts = []
    for stage in stages:
        classes = sorted({gpu.gpu_class for gpu in stage.gpus})
        label = "+".join(classes) if tp == 1 else f"{tp}x{'+'.join(classes)}"
        parts.append(f"{label}[{stage.layers}]")
    return f"TP={tp} PP={len(stages)}: " + " -> ".join(parts)
