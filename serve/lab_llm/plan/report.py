"""A plan as a person reads it: the layout, a table per GPU, the configs, the alternatives."""

from __future__ import annotations

from lab_llm.plan.result import FitPlan


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return [line.format(*header), line.format(*("-" * w for w in widths))] + [line.format(*r) for r in rows]


def render_plan(plan: FitPlan, context_length: int | None, concurrency: int) -> str:
    wanted = f"{context_length} tokens" if context_length else "the longest the chosen layout holds"
    lines = [
        f"Model {plan.model} ({plan.weights}, KV cache {plan.kv_cache_dtype}): context {wanted} x {concurrency}",
        f"Layout {plan.layout()}",
        f"  gpu_memory_utilization {plan.gpu_memory_utilization}, max_model_len {plan.max_model_len}, "
        f"KV cache {plan.kv_cache_tokens} tokens ({plan.max_concurrency} x max_model_len)"
        + (f", cpu_offload_gb {plan.cpu_offload_gb}" if plan.cpu_offload_gb else ""),
        f"  decode, one stream (estimate): {plan.decode.tokens_per_s} tok/s = memory {plan.decode.memory_ms} ms "
        f"+ communication {plan.decode.communication_ms} ms + engine and pipeline {plan.decode.overhead_ms} ms "
        "per token",
        "",
    ]
    header = ["GPU", "class", "stage", "layers", "total", "weights", "KV cache", "activations", "overhead", "free"]
    rows = [
        [
            f"{gpu.node}/{gpu.index}",
            gpu.gpu_class,
            f"{gpu.stage}" + (f".{gpu.tp_rank}" if plan.tensor_parallel_size > 1 else ""),
            str(plan.stages[gpu.stage].layers),
            f"{gpu.total:.2f}",
            f"{gpu.weights:.2f}",
            f"{gpu.kv_cache:.2f}",
            f"{gpu.activations:.2f}",
            f"{gpu.overhead:.2f}",
            f"{gpu.free:.2f}",
        ]
        for gpu in plan.gpus
    ]
    lines += ["Memory per GPU (GiB):", *_table(header, rows), ""]
    engine = {k: v for k, v in plan.engine_config.items() if k != "env"}
    lines.append("Engine config: " + ", ".join(f"{k}={v}" for k, v in engine.items()))
    for name, value in plan.engine_config["env"].items():
        lines.append(f"  env {name}={value}")
    groups = ", ".join(
        f"{g['replicas']} x {g['gpu_class']} ({g['gpus_per_worker']} GPU/worker)" for g in plan.worker_groups
    )
    lines.append(f"Ray worker groups: {groups}")
    if plan.alternatives:
        lines += ["", "Other layouts that fit (fastest first):"]
        lines += [
            f"  {a.stages}: {a.decode_tokens_per_s} tok/s, KV cache {a.kv_cache_tokens} tokens"
            + (f", cpu_offload_gb {a.cpu_offload_gb}" if a.cpu_offload_gb else "")
            for a in plan.alternatives
        ]
    if plan.notes:
        lines += ["", "Notes:", *(f"  - {note}" for note in plan.notes)]
    return "\n".join(lines)
