"""Single-stream decode speed: every token reads each stage's weights once, so memory bandwidth bounds it.

Per token, stages run one after the other (one request never overlaps with itself in a pipeline):

    time = sum over stages of  bytes read by one rank / (card bandwidth x efficiency)
                              + offloaded bytes / PCIe bandwidth
                              + 2 all-reduces per layer of hidden_size x 2 bytes over the TP link
         + (pp - 1) hand-offs of hidden state and residual over the link between stages
         + (pp - 1) x PIPELINE_STAGE_OVERHEAD_MS (what a stage boundary costs beyond the bytes)
         + a fixed engine overhead (scheduling, sampling, detokenising)

Bytes read: the decoder layers' weights (a MoE reads only top-k of its experts), lm_head on the last stage
(the embedding reads one row), and the KV cache of a context of ``PERF_CONTEXT_TOKENS``.

The two constants come from one published measurement, not from our own runs: vLLM with a 4-bit AWQ
Llama-2-7B (about 3.9 GB read per token) decodes 175 tok/s on one RTX 3090 (mlc-ai/llm-perf-bench#35),
i.e. 5.7 ms per token = 3.9 GB / (936 GB/s x 0.8) + 0.5 ms.

A pipeline costs more than its hand-off bytes. Per token, vLLM's pipeline runs the stages one after the other, and
each boundary adds a NCCL send/recv of the hidden state, a Ray (compiled graph) hop of the step's inputs and a
wait for the next stage's kernels to be launched. Published reports agree that this is latency, not bandwidth:
doubling the network between two nodes (400 to 800 Gbit/s) left vLLM's PP tokens/s unchanged
(vllm-project/vllm#6610); a second RTX 3070 as a PP stage gave "no increase in generation speed"
(vllm-project/vllm#12322); vLLM's maintainers call PP for one request "extremely inefficient"
(vllm-project/vllm#6826). The one published single-stream figure for vLLM PP over Ethernet without NVLink that
states model, cards and network is the reference lab's deployment tuned by hand before lab-llm: its 24B AWQ model
at TP=1 PP=2 on two RTX 3090 VMs over 10GbE decodes about 40 tok/s, 25 ms per token, against 18.2 ms of memory,
hand-off and engine time. The remaining 6.8 ms is PIPELINE_STAGE_OVERHEAD_MS: one figure, so it fits that figure
by construction and is a per-boundary constant by assumption (README "Speed" lists every figure used and the
estimate's error against each).
"""

from __future__ import annotations

from dataclasses import dataclass

from lab_llm.plan.memory import GIB

BANDWIDTH_EFFICIENCY = 0.8
ENGINE_OVERHEAD_MS = 0.5
PIPELINE_STAGE_OVERHEAD_MS = 6.8  # per boundary between PP stages (see above)
PERF_CONTEXT_TOKENS = 1024
PCIE_OFFLOAD_GBS = 25.0  # PCIe 4.0 x16, for weights vLLM reads from pinned CPU memory (cpu_offload_gb)


@dataclass(frozen=True)
class StageTraffic:
    """What one rank of a stage moves per decoded token."""

    bytes_read: int
    bandwidth_gbs: float
    offloaded_bytes: int
    all_reduces: int
    all_reduce_bytes: int
    tp: int
    tp_link_bandwidth_gbs: float
    tp_link_latency_us: float


@dataclass(frozen=True)
class DecodeEstimate:
    tokens_per_s: float
    memory_ms: float
    communication_ms: float
    overhead_ms: float
    """Engine overhead plus PIPELINE_STAGE_OVERHEAD_MS per boundary between stages."""


def all_reduce_ms(size_bytes: int, ranks: int, bandwidth_gbs: float, latency_us: float) -> float:
    """Ring all-reduce: latency plus 2 (n - 1) / n of the message over the link."""
    if ranks <= 1:
        return 0.0
    transfer_s = 2 * (ranks - 1) / ranks * size_bytes / (bandwidth_gbs * 1e9)
    return latency_us / 1000 + transfer_s * 1000


def hand_off_ms(size_bytes: int, bandwidth_gbs: float, latency_us: float) -> float:
    return latency_us / 1000 + size_bytes / (bandwidth_gbs * 1e9) * 1000


def estimate_decode(stages: list[StageTraffic], hand_offs: list[tuple[int, float, float]]) -> DecodeEstimate:
    """``hand_offs``: (bytes, link bandwidth GB/s, link latency us) for each boundary between stages."""
    memory_ms = sum(s.bytes_read / (s.bandwidth_gbs * 1e9 * BANDWIDTH_EFFICIENCY) * 1000 for s in stages)
    memory_ms += sum(s.offloaded_bytes / (PCIE_OFFLOAD_GBS * 1e9) * 1000 for s in stages)
    communication_ms = sum(
        s.all_reduces * all_reduce_ms(s.all_reduce_bytes, s.tp, s.tp_link_bandwidth_gbs, s.tp_link_latency_us)
        for s in stages
    )
    communication_ms += sum(hand_off_ms(size, bw, lat) for size, bw, lat in hand_offs)
    overhead_ms = ENGINE_OVERHEAD_MS + len(hand_offs) * PIPELINE_STAGE_OVERHEAD_MS
    total_ms = memory_ms + communication_ms + overhead_ms
    return DecodeEstimate(
        tokens_per_s=round(1000 / total_ms, 1),
        memory_ms=round(memory_ms, 2),
        communication_ms=round(communication_ms, 2),
        overhead_ms=round(overhead_ms, 2),
    )


def offload_bytes(offload_gib: float) -> int:
    return int(offload_gib * GIB)
