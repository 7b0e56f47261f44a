"""The plan against the running engine: the KV cache vLLM allocated beside the one the plan predicted.

vLLM publishes its cache configuration as the info gauge ``vllm:cache_config_info`` on its own ``/metrics``
(vllm/v1/metrics/loggers.py ``log_metrics_info``: one label per ``CacheConfig`` field, among them ``num_gpu_blocks``
and ``block_size``, value 1); through Ray's metrics agent it would be ``ray_vllm_cache_config_info``
(vllm/v1/metrics/ray_wrappers.py sanitises the name), but Ray 2.60 with vLLM 0.32 exported every other vLLM metric
and not this one on the local stack. vLLM also logs ``GPU KV cache size: 185,952 tokens`` when the engine starts
(``update_kv_cache_capacity``, v1/core/kv_cache_utils.py; ``CPU`` on the CPU build): the llm_app role reads that
from the engine replica's output. Metrics are preferred when the input has both.

The plan counts usable tokens: every block but the one the block pool keeps as its null block
(``lab_llm.plan.sizing``), so the allocation is compared the same way: ``(num_gpu_blocks - 1) x block_size``.

    python -m lab_llm.plan.verify --planned-tokens 185952 < metrics.txt    # prints one JSON object

Exit status 0 (also when the numbers differ: that is a warning, not a failure), 2 when nothing in the input
says what vLLM allocated.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass

TOLERANCE = 0.05  # beyond 5 % the plan's memory model missed something worth a look

_INFO_NAMES = ("vllm:cache_config_info", "vllm_cache_config_info", "ray_vllm_cache_config_info")
_SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)\{(?P<labels>.*)\}\s+(?P<value>\S+)")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')
_LOG_LINE = re.compile(r"(?:GPU|CPU|XPU|TPU)[^:\n]*KV cache size: ([\d,]+) tokens")


@dataclass(frozen=True)
class KvCacheAllocation:
    """What one engine allocated."""

    num_gpu_blocks: int
    block_size: int
    source: str
    """``metrics`` or ``log``."""

    @property
    def tokens(self) -> int:
        """Usable tokens, as the plan counts them (the null block left out)."""
        return max(0, self.num_gpu_blocks - 1) * self.block_size


@dataclass(frozen=True)
class KvCacheComparison:
    planned_tokens: int
    allocated_tokens: int
    num_gpu_blocks: int
    block_size: int
    difference_percent: float
    """(allocated - planned) / planned x 100."""
    source: str
    warning: str
    """Empty when the two agree within TOLERANCE."""


def allocations_from_metrics(text: str) -> list[KvCacheAllocation]:
    """Every ``cache_config_info`` sample with a known block count, in Prometheus text exposition format."""
    found = []
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if not match or match.group("name") not in _INFO_NAMES:
            continue
        labels = {key: value for key, value in _LABEL.findall(match.group("labels"))}
        blocks, block_size = labels.get("num_gpu_blocks", ""), labels.get("block_size", "")
        if blocks.isdigit() and block_size.isdigit() and int(block_size) > 0:
            found.append(KvCacheAllocation(int(blocks), int(block_size), "metrics"))
    return found


def allocations_from_log(text: str, block_size: int = 16) -> list[KvCacheAllocation]:
    """``KV cache size: N tokens`` lines of vLLM's start-up log (N counts every block, the null block too)."""
    return [
        KvCacheAllocation(int(tokens.replace(",", "")) // block_size, block_size, "log")
        for tokens in _LOG_LINE.findall(text)
    ]


def likely_cause(planned: int, allocated: int) -> str:
    if allocated < planned:
        return (
            "vLLM measured more memory outside the KV cache than the plan's estimates (activation peak, CUDA graphs, "
            "non-torch memory), or another process holds memory on a GPU, or gpu_memory_utilization / max_num_seqs "
            "differ from the plan's engine config"
        )
    return (
        "the plan's estimates of activations, CUDA graphs and runtime memory are larger than what vLLM measured, or "
        "the engine runs with a higher gpu_memory_utilization or a smaller max_num_seqs than the plan"
    )


def compare(planned_tokens: int, allocation: KvCacheAllocation, tolerance: float = TOLERANCE) -> KvCacheComparison:
    """The allocation beside the plan; a warning naming both numbers and the likely cause beyond ``tolerance``."""
    if planned_tokens <= 0:
        raise ValueError(f"planned_tokens must be positive, not {planned_tokens}")
    allocated = allocation.tokens
    difference = (allocated - planned_tokens) / planned_tokens
    warning = ""
    if abs(difference) > tolerance:
        warning = (
            f"vLLM allocated a KV cache of {allocated} tokens ({allocation.num_gpu_blocks} blocks of "
            f"{allocation.block_size}); the fit plan predicted {planned_tokens} ({difference * 100:+.1f} %). "
            f"Likely cause: {likely_cause(planned_tokens, allocated)}."
        )
    return KvCacheComparison(
        planned_tokens=planned_tokens,
        allocated_tokens=allocated,
        num_gpu_blocks=allocation.num_gpu_blocks,
        block_size=allocation.block_size,
        difference_percent=round(difference * 100, 1),
        source=allocation.source,
        warning=warning,
    )


def compare_text(planned_tokens: int, text: str) -> KvCacheComparison:
    """From metrics (preferred) or log text; several engines (replicas) are compared by the smallest.
    ValueError when the text says nothing about the KV cache."""
    allocations = allocations_from_metrics(text) or allocations_from_log(text)
    if not allocations:
        raise ValueError("no vllm cache_config_info metric and no 'KV cache size' log line in the input")
    return compare(planned_tokens, min(allocations, key=lambda a: a.tokens))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--planned-tokens", type=int, required=True, help="the fit plan's kv_cache_tokens")
    arguments = parser.parse_args(argv)
    try:
        result = compare_text(arguments.planned_tokens, sys.stdin.read())
    except ValueError as error:
        print(json.dumps({"error": str(error)}))
        return 2
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
