"""Bytes: weights and KV cache (exact arithmetic), activations and runtime overheads (estimates).

Weights follow vLLM's layer classes:
- ``QKVParallelLinear`` (vllm/model_executor/layers/linear.py) gives each TP rank ``heads / tp`` query heads and
  ``max(1, kv_heads / tp)`` KV heads; when tp > kv_heads every rank holds a replica of one KV head.
- ``VocabParallelEmbedding`` pads the vocabulary to a multiple of 64 (``DEFAULT_VOCAB_PADDING_SIZE``) and shards
  it over TP. The first PP stage holds ``embed_tokens``; the last holds ``lm_head`` — and, with tied embeddings,
  its own copy of ``embed_tokens`` (vllm/model_executor/models/llama.py: ``is_first_rank or
  (tie_word_embeddings and is_last_rank)``).
- AWQ/GPTQ store a linear ``in x out`` as packed 4-bit ``qweight`` plus, per group of ``group_size`` input rows,
  packed 4-bit ``qzeros`` and fp16 ``scales``; embeddings, ``lm_head``, norms, biases and the MoE router stay
  16-bit (the MoE gate is built with ``quant_config=None``).
- fp8 stores one byte per weight plus a float32 per-tensor ``weight_scale`` per logical linear (vLLM's
  ``Fp8LinearMethod`` with dynamic activation scales).

KV cache per token and layer: ``2 (K and V) x kv_heads_per_rank x head_dim x bytes`` — the page size of
``FullAttentionSpec`` (vllm/v1/kv_cache_interface.py) divided by its block size.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab_llm.plan.model import ModelSpec, WeightFormat

GIB = 1024**3
VOCAB_PADDING = 64  # vllm/model_executor/layers/vocab_parallel_embedding.py DEFAULT_VOCAB_PADDING_SIZE
BLOCK_SIZE = 16  # vLLM's default KV cache block size on CUDA (tokens per block)
ACTIVATION_BYTES = 2  # activations and "auto" KV cache are fp16/bf16 for every weight format planned here
FP8_SCALE_BYTES = 4  # one float32 weight_scale per logical linear


def padded_vocab(vocab_size: int) -> int:
    return -(-vocab_size // VOCAB_PADDING) * VOCAB_PADDING


def kv_heads_per_rank(model: ModelSpec, tp: int) -> int:
    """vLLM's ``ModelConfig.get_num_kv_heads``: ``max(1, total_kv_heads // tp)``."""
    return max(1, model.kv_heads // tp)


def kv_bytes_per_element(kv_cache_dtype: str) -> int:
    return 1 if kv_cache_dtype == "fp8" else ACTIVATION_BYTES


def kv_bytes_per_token_per_layer(model: ModelSpec, tp: int, kv_cache_dtype: str) -> int:
    """Per TP rank: K and V, each ``kv_heads_per_rank x head_dim`` elements."""
    return 2 * kv_heads_per_rank(model, tp) * model.head_size * kv_bytes_per_element(kv_cache_dtype)


def linear_bytes(in_features: int, out_features: int, weights: WeightFormat) -> int:
    """Stored bytes of one linear layer's weight, with its quantization scales and zero points."""
    if weights.dtype in ("fp16", "bf16"):
        return in_features * out_features * 2
    if weights.dtype == "fp8":
        return in_features * out_features + FP8_SCALE_BYTES
    group = in_features if weights.group_size <= 0 else weights.group_size
    groups = -(-in_features // group)
    packed = in_features * out_features * weights.bits // 8
    zeros = groups * out_features * weights.bits // 8
    scales = groups * out_features * 2
    return packed + zeros + scales


@dataclass(frozen=True)
class LayerWeights:
    """One decoder layer on one TP rank, split into what every token reads and what only routed tokens read."""

    dense_bytes: int
    """Attention, norms, biases, router, and the MLP of a dense model."""
    expert_bytes: int
    """All routed experts of a MoE layer (0 for a dense model)."""

    @property
    def total(self) -> int:
        return self.dense_bytes + self.expert_bytes


def layer_weights(model: ModelSpec, weights: WeightFormat, tp: int) -> LayerWeights:
    hidden, head = model.hidden_size, model.head_size
    q_out = model.num_attention_heads * head // tp
    kv_out = kv_heads_per_rank(model, tp) * head
    attention = (
        linear_bytes(hidden, q_out, weights)
        + 2 * linear_bytes(hidden, kv_out, weights)
        + linear_bytes(q_out, hidden, weights)
    )
    biases = (q_out + 2 * kv_out) * 2 if model.attention_bias else 0
    norms = 2 * hidden * 2
    if model.is_moe:
        width = model.expert_intermediate_size // tp
        router = hidden * model.num_local_experts * 2
        one_expert = 2 * linear_bytes(hidden, width, weights) + linear_bytes(width, hidden, weights)
        return LayerWeights(attention + biases + norms + router, model.num_local_experts * one_expert)
    width = model.intermediate_size // tp
    mlp = 2 * linear_bytes(hidden, width, weights) + linear_bytes(width, hidden, weights)
    return LayerWeights(attention + biases + norms + mlp, 0)


def vocab_matrix_bytes(model: ModelSpec, tp: int) -> int:
    """One 16-bit ``vocab x hidden`` matrix (embed_tokens or lm_head) on one TP rank."""
    return padded_vocab(model.vocab_size) // tp * model.hidden_size * 2


def edge_weights(model: ModelSpec, tp: int, first: bool, last: bool) -> int:
    """Bytes outside the decoder layers on a stage: embeddings, lm_head, final norm."""
    matrix = vocab_matrix_bytes(model, tp)
    copies = 0
    if first or last:
        # One stage alone holds embed_tokens and, unless tied, lm_head; split, each end holds one matrix.
        copies = 2 if first and last and not model.tie_word_embeddings else 1
    total = copies * matrix
    if last:
        total += model.hidden_size * 2
    return total


def total_weight_bytes(model: ModelSpec, weights: WeightFormat) -> int:
    """The whole model on one GPU (tp=1, pp=1)."""
    return model.num_hidden_layers * layer_weights(model, weights, 1).total + edge_weights(model, 1, True, True)


@dataclass(frozen=True)
class Overheads:
    """Estimated memory outside weights and KV cache, per GPU. vLLM measures these at start-up (a profiling
    forward pass, then CUDA graph capture) and gives the KV cache what is left, so an error here moves the
    KV cache size, not whether the engine starts — the margins below keep the plan on the safe side.

    Figures seen in vLLM's own logs: "non_torch_memory takes 0.33GiB; PyTorch activation peak memory takes
    1.01GiB" (vllm-project/vllm#14452, 24B-class model on one card), "Estimated CUDA graph memory: 0.17 GiB"
    to "0.58 GiB" on RTX 3090s (noonghunna/club-3090#127, wtdcode/vllm-backport#34), CUDA-graph memory is
    counted inside gpu_memory_utilization since v0.21 (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1 default,
    vllm/envs.py).
    """

    cuda_context_gib: float = 0.45
    """CUDA context + PyTorch init, taken before vLLM's first snapshot, so outside the requested budget:
    vLLM refuses to start when free memory < total x gpu_memory_utilization (vllm/v1/worker/utils.py
    ``request_memory``)."""
    non_torch_gib: float = 0.35
    """cuBLAS workspaces and allocator slack that torch does not count."""
    communication_gib: float = 0.25
    """NCCL communicators and custom all-reduce buffers on ranks of a multi-GPU engine."""
    cuda_graphs_gib: float = 0.5
    """Captured decode graphs (none with enforce_eager)."""
    safety_margin_gib: float = 0.25
    """Fragmentation and estimate error."""
    sampler_copies: int = 3
    """float32 logits, probabilities and a sort buffer of max_num_seqs x vocab in the profiling sampler run."""


DEFAULT_OVERHEADS = Overheads()


def activation_peak_bytes(model: ModelSpec, tp: int, tokens: int) -> int:
    """Peak of one forward pass over ``tokens`` (max_num_batched_tokens): residual + normed hidden state,
    attention projections, and the MLP's gate/up output and activation (for a MoE: the fused-MoE caches of
    top-k experts per token)."""
    hidden, head = model.hidden_size, model.head_size
    attention = (model.num_attention_heads // tp + 2 * kv_heads_per_rank(model, tp)) * head
    if model.is_moe:
        mlp = model.num_experts_per_tok * (3 * model.expert_intermediate_size // tp + hidden)
    else:
        mlp = 3 * model.intermediate_size // tp
    return tokens * ACTIVATION_BYTES * (2 * hidden + attention + mlp)


def sampler_bytes(model: ModelSpec, max_num_seqs: int, overheads: Overheads = DEFAULT_OVERHEADS) -> int:
    """The last stage samples ``max_num_seqs`` dummy requests over the whole (gathered) vocabulary."""
    return max_num_seqs * padded_vocab(model.vocab_size) * 4 * overheads.sampler_copies
