"""The planner's vLLM rules checked against the installed vLLM itself (skipped where vLLM is not installed).

The planner never imports vLLM; these tests do, to catch a vLLM upgrade that changes the page size of the KV
cache, the parsing of VLLM_PP_LAYER_PARTITION or the vocabulary padding.
"""

from __future__ import annotations

import pytest

from lab_llm.plan import plan_fit
from lab_llm.plan.memory import BLOCK_SIZE, kv_bytes_per_token_per_layer, kv_heads_per_rank, padded_vocab
from lab_llm.plan.model import load_model_spec
from tests.unit.serve.plan.plan_inputs import model_path, reference_lab_inventory

torch = pytest.importorskip("torch")
kv_cache_interface = pytest.importorskip("vllm.v1.kv_cache_interface")
distributed_utils = pytest.importorskip("vllm.distributed.utils")
vocab_embedding = pytest.importorskip("vllm.model_executor.layers.vocab_parallel_embedding")

MODELS = ["llama-3-8b", "qwen2.5-32b", "mistral-small-24b", "mixtral-8x7b", "tiny-llama"]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("tp", [1, 2, 8])
@pytest.mark.parametrize(("kv_cache_dtype", "torch_dtype"), [("auto", "bfloat16"), ("fp8", "uint8")])
def test_kv_bytes_match_vllm_page_size(name: str, tp: int, kv_cache_dtype: str, torch_dtype: str) -> None:
    model = load_model_spec(model_path(name))
    spec = kv_cache_interface.FullAttentionSpec(
        block_size=BLOCK_SIZE,
        num_kv_heads=kv_heads_per_rank(model, tp),
        head_size=model.head_size,
        dtype=getattr(torch, torch_dtype),  # vLLM stores fp8 KV caches as uint8 (STR_DTYPE_TO_TORCH_DTYPE)
    )
    assert spec.page_size_bytes == BLOCK_SIZE * kv_bytes_per_token_per_layer(model, tp, kv_cache_dtype)


def test_layer_partition_is_parsed_by_vllm_as_planned(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plan_fit(model_path("qwen2.5-32b"), reference_lab_inventory(), weights="bf16", context_length=8192)
    monkeypatch.setenv("VLLM_PP_LAYER_PARTITION", plan.engine_config["env"]["VLLM_PP_LAYER_PARTITION"])
    ranges = [distributed_utils.get_pp_indices(64, rank, plan.pipeline_parallel_size) for rank in range(4)]
    assert ranges == [(stage.first_layer, stage.end_layer) for stage in plan.stages]


def test_vocab_padding_matches_vllm() -> None:
    for vocab in (2000, 32000, 128256, 131072, 152064, 151936):
        assert padded_vocab(vocab) == vocab_embedding.pad_vocab_size(vocab)
