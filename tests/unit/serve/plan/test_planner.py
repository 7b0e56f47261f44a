"""Layouts the planner picks, the vLLM rules it keeps, and how it says no."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lab_llm.plan import DoesNotFitError, FitPlan, PlanInputError, plan_fit
from lab_llm.plan.inventory import Limits, load_inventory
from lab_llm.plan.layouts import tp_groups, tp_rejection
from lab_llm.plan.memory import GIB, kv_bytes_per_token_per_layer, layer_weights
from lab_llm.plan.model import WeightFormat, load_model_spec
from lab_llm.plan.sizing import Request, evaluate
from tests.unit.serve.plan.plan_inputs import (
    model_path,
    one_gpu_per_node,
    reference_lab_inventory,
    single_node,
)

LAB_MODEL = model_path("dolphin3-r1-mistral-24b-awq")
LAB_LIMITS = {"gpu_memory_utilization": 0.97}


def lab_model_plan(**kwargs: Any) -> FitPlan:
    arguments: dict[str, Any] = {"weights": "awq", "context_length": 32768, "limits": LAB_LIMITS}
    arguments.update(kwargs)
    return plan_fit(LAB_MODEL, reference_lab_inventory(), **arguments)


def vllm_pp_indices(partition: str, layers: int, pp: int) -> list[tuple[int, int]]:
    """vllm/distributed/utils.py get_pp_indices with VLLM_PP_LAYER_PARTITION set, restated."""
    counts = [int(part) for part in partition.split(",")]
    assert len(counts) == pp
    assert sum(counts) == layers
    return [(sum(counts[:rank]), sum(counts[: rank + 1])) for rank in range(pp)]


# ------------------------------------------------------------------- the reference lab's model and hand-tuned layout


def test_lab_model_at_32k_fits_on_the_reference_lab_at_least_as_fast_as_the_hand_tuned_layout() -> None:
    plan = lab_model_plan()
    assert plan.max_model_len == 32768
    assert plan.kv_cache_tokens >= 32768
    hand_tuned_layout = [a for a in plan.alternatives if a.stages == "TP=1 PP=2: rtx-3090[20] -> rtx-3090[20]"]
    assert hand_tuned_layout, "the hand-tuned TP=1 PP=2 on two 3090s is among the layouts that fit"
    assert plan.decode.tokens_per_s >= hand_tuned_layout[0].decode_tokens_per_s
    assert plan.pipeline_parallel_size * plan.tensor_parallel_size <= 2


def test_lab_model_with_four_concurrent_32k_requests_needs_the_hand_tuned_pp2() -> None:
    plan = lab_model_plan(concurrency=4)
    assert (plan.tensor_parallel_size, plan.pipeline_parallel_size) == (1, 2)
    assert [gpu.gpu_class for stage in plan.stages for gpu in stage.gpus] == ["rtx-3090", "rtx-3090"]
    assert plan.layer_partition == (20, 20)
    assert plan.engine_config["env"] == {"VLLM_PP_LAYER_PARTITION": "20,20"}
    assert plan.max_concurrency >= 4
    assert plan.stages[0].embeddings
    assert not plan.stages[0].lm_head
    assert plan.stages[1].lm_head
    assert not plan.stages[1].embeddings


def test_kv_cache_tokens_follow_from_the_budget_arithmetic() -> None:
    plan = lab_model_plan(concurrency=4)
    model = load_model_spec(LAB_MODEL)
    layer = layer_weights(model, WeightFormat(dtype="awq"), 1).total
    kv_layer = kv_bytes_per_token_per_layer(model, 1, "auto")
    for gpu in plan.gpus:
        # weights + KV + activations + overhead + free add up to the card, and KV is what the blocks hold
        parts = gpu.weights + gpu.kv_cache + gpu.activations + gpu.overhead + gpu.free
        assert parts == pytest.approx(gpu.total, abs=0.03)
        assert gpu.kv_cache == pytest.approx(plan.kv_cache_tokens * 20 * kv_layer / GIB, abs=0.02)
        assert gpu.weights * GIB == pytest.approx(20 * layer + 131072 * 5120 * 2 + 5120 * 2 * gpu.stage, rel=1e-3)
        # the CUDA context stays outside gpu_memory_utilization
        assert gpu.free >= gpu.total * (1 - plan.gpu_memory_utilization) - 0.01
    assert plan.kv_cache_tokens % 16 == 0


def test_engine_config_has_exactly_the_spine_fields() -> None:
    config = lab_model_plan().engine_config
    assert set(config) == {
        "model",
        "served_model_name",
        "tensor_parallel_size",
        "pipeline_parallel_size",
        "gpu_memory_utilization",
        "cpu_offload_gb",
        "max_model_len",
        "dtype",
        "quantization",
        "kv_cache_dtype",
        "enforce_eager",
        "max_num_seqs",
        "env",
    }
    assert config["quantization"] is None, "AWQ is read from the checkpoint so vLLM can pick Marlin"
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in config["env"].items())


def test_engine_config_validates_against_the_spine_schema() -> None:
    config_module = pytest.importorskip("lab_llm.config", reason="the spine's config.py is not written yet")
    engine = config_module.EngineConfig.model_validate(lab_model_plan(concurrency=4).engine_config)
    assert engine.pipeline_parallel_size == 2
    uneven = plan_fit(model_path("qwen2.5-32b"), reference_lab_inventory(), weights="bf16", context_length=8192)
    engine = config_module.EngineConfig.model_validate(uneven.engine_config)
    assert engine.env["VLLM_RAY_BUNDLE_INDICES"] == "0,1,2,3"
    offloaded = plan_fit(
        model_path("mixtral-8x7b"), reference_lab_inventory(), weights="bf16", context_length=4096,
        limits={"cpu_offload_gib": 16},
    )  # fmt: skip
    assert config_module.EngineConfig.model_validate(offloaded.engine_config).cpu_offload_gb > 0


def test_worker_groups_count_nodes_per_gpu_class() -> None:
    plan = lab_model_plan(concurrency=4)
    assert plan.worker_groups == ({"gpu_class": "rtx-3090", "replicas": 2, "gpus_per_worker": 1},)
    assert plan.ray_placement_bundles == ({"CPU": 1.0, "GPU": 1.0, "rtx-3090": 1.0},) * 2


# ------------------------------------------------------------------------------------------- uneven split


def test_uneven_split_gives_the_small_card_fewer_layers() -> None:
    # Qwen2.5-32B in bf16 needs all four cards; the 12 GB 3060 must take fewer layers than the 3090s.
    plan = plan_fit(
        model_path("qwen2.5-32b"), reference_lab_inventory(), weights="bf16", context_length=8192, limits=LAB_LIMITS
    )
    assert plan.pipeline_parallel_size == 4
    layers = {stage.gpus[0].gpu_class: stage.layers for stage in plan.stages}
    assert layers["rtx-3060"] < min(s.layers for s in plan.stages if s.gpus[0].gpu_class == "rtx-3090")
    env = plan.engine_config["env"]
    assert vllm_pp_indices(env["VLLM_PP_LAYER_PARTITION"], 64, 4)[-1] == (64 - plan.stages[-1].layers, 64)
    assert env["VLLM_RAY_BUNDLE_INDICES"] == "0,1,2,3"
    # the 3060 (11.76 GiB, 0.45 GiB CUDA context) allows 0.96; the 3090s the 0.97 ceiling; the engine takes 0.96
    allowed = {s.gpus[0].gpu_class: s.max_gpu_memory_utilization for s in plan.stages}
    assert allowed == {"rtx-3060": 0.96, "rtx-3090": 0.97}
    assert plan.gpu_memory_utilization == 0.96
    assert [b[s.gpus[0].gpu_class] for b, s in zip(plan.ray_placement_bundles, plan.stages, strict=True)] == [1.0] * 4
    for gpu in plan.gpus:
        assert gpu.free >= 0, f"{gpu.node} is over-committed"
    assert sorted(g["gpu_class"] for g in plan.worker_groups) == ["rtx-3060", "rtx-3090"]


def test_split_balances_kv_capacity_across_unequal_cards() -> None:
    # On a 3060 + 3090 pair, an even 20/20 split would leave the 3060 with almost no KV cache.
    plan = plan_fit(
        LAB_MODEL,
        one_gpu_per_node("rtx-3060", "rtx-3090"),
        weights="awq",
        context_length=32768,
        concurrency=2,
    )
    assert plan.pipeline_parallel_size == 2
    by_class = {gpu.gpu_class: gpu for gpu in plan.gpus}
    small, large = by_class["rtx-3060"], by_class["rtx-3090"]
    stage_layers = {plan.stages[gpu.stage].gpus[0].gpu_class: plan.stages[gpu.stage].layers for gpu in plan.gpus}
    assert stage_layers["rtx-3060"] < stage_layers["rtx-3090"]
    assert small.weights < large.weights
    # both cards hold the same number of KV tokens for their layers (vLLM uses the smaller block count)
    assert small.kv_cache / stage_layers["rtx-3060"] == pytest.approx(
        large.kv_cache / stage_layers["rtx-3090"], rel=0.02
    )


# ------------------------------------------------------------------------------------------- TP rules


def test_tp_must_divide_attention_heads() -> None:
    qwen = load_model_spec(model_path("qwen2.5-32b"))
    assert "40 attention heads" in tp_rejection(qwen, WeightFormat(), 3)
    assert tp_rejection(qwen, WeightFormat(), 4) == ""


def test_tp_above_kv_heads_is_allowed_as_a_multiple() -> None:
    llama = load_model_spec(model_path("llama-3-8b"))
    assert tp_rejection(llama, WeightFormat(), 16) == ""
    odd = llama.model_copy(update={"num_key_value_heads": 8, "num_attention_heads": 48, "hidden_size": 6144})
    assert "KV heads" in tp_rejection(odd, WeightFormat(), 12)


def test_tp_must_not_split_quantization_groups() -> None:
    model = load_model_spec(model_path("llama-3-8b")).model_copy(update={"intermediate_size": 18944})
    assert "quantization groups" in tp_rejection(model, WeightFormat(dtype="awq", group_size=128), 8)
    assert tp_rejection(model, WeightFormat(dtype="bf16"), 8) == ""


def test_tp_stays_inside_a_node_unless_allowed() -> None:
    inventory = one_gpu_per_node("rtx-3090", "rtx-3090")
    plan = plan_fit(model_path("llama-3-8b"), inventory, weights="bf16", context_length=8192, concurrency=8)
    layouts = [plan.tensor_parallel_size] + [a.tensor_parallel_size for a in plan.alternatives]
    assert set(layouts) == {1}
    allowed = plan_fit(
        model_path("llama-3-8b"),
        inventory,
        weights="bf16",
        context_length=8192,
        concurrency=8,
        limits={"allow_tp_over_network": True},
    )
    speeds = {(a.tensor_parallel_size, a.pipeline_parallel_size): a.decode_tokens_per_s for a in allowed.alternatives}
    speeds[(allowed.tensor_parallel_size, allowed.pipeline_parallel_size)] = allowed.decode.tokens_per_s
    assert set(speeds) == {(2, 1), (1, 2)}, "TP=2 over the network is considered when allowed"
    # Two all-reduces per layer over 10GbE (16 ms) against one pipeline boundary (6.8 ms + hand-off): close, and
    # the faster estimate wins.
    assert speeds[(allowed.tensor_parallel_size, allowed.pipeline_parallel_size)] == max(speeds.values())


def test_tp_inside_a_node_is_preferred_over_pipeline_when_faster() -> None:
    plan = plan_fit(
        model_path("qwen2.5-32b"), single_node("rtx-3090", "rtx-3090", "rtx-3090", "rtx-3090", link="nvlink"),
        weights="awq", context_length=32768, concurrency=4,
    )  # fmt: skip
    assert plan.tensor_parallel_size > 1
    assert plan.engine_config["tensor_parallel_size"] == plan.tensor_parallel_size


def test_tp_group_is_sized_by_its_smallest_card() -> None:
    # A 3090 and a 3060 in one TP group: both ranks hold the same shards and the same KV blocks, so the 3090
    # keeps about 12 GiB unused (vLLM gives every rank the smallest rank's block count).
    request = Request(
        model=load_model_spec(model_path("llama-3-8b")),
        weights=WeightFormat(dtype="bf16"),
        kv_cache_dtype="auto",
        context_length=8192,
        concurrency=1,
        inventory=load_inventory(single_node("rtx-3090", "rtx-3060")),
        limits=Limits(),
        served_model_name="llama",
    )
    (group,) = tp_groups(request.inventory, 2, allow_network=False)
    evaluation = evaluate(request, 2, (group,))
    assert evaluation.fits
    big, small = sorted(evaluation.budgets, key=lambda g: -g.total)
    assert (big.gpu_class, small.gpu_class) == ("rtx-3090", "rtx-3060")
    assert big.kv_cache == small.kv_cache
    assert big.weights == small.weights
    assert big.free - small.free == pytest.approx(23.69 - 11.76, abs=0.05)


def test_utilization_leaves_room_for_the_cuda_context() -> None:
    plan = plan_fit(
        model_path("llama-3-8b"), single_node("rtx-3060"), weights="awq", context_length=8192,
        limits={"gpu_memory_utilization": 0.99},
    )  # fmt: skip
    # 11.76 GiB total, 0.45 GiB context -> at most 0.96
    assert plan.gpu_memory_utilization == 0.96


# ------------------------------------------------------------------------------------------- longest context


def test_without_a_context_it_finds_the_longest_that_fits() -> None:
    plan = plan_fit(model_path("qwen2.5-32b"), single_node("rtx-3090"), weights="awq")
    assert plan.max_model_len % 1024 == 0
    assert plan.max_model_len <= plan.kv_cache_tokens < plan.max_model_len + 1024 + 16


# ------------------------------------------------------------------------------------------- does not fit


def test_mixtral_bf16_does_not_fit_and_4bit_is_suggested() -> None:
    with pytest.raises(DoesNotFitError) as raised:
        plan_fit(model_path("mixtral-8x7b"), reference_lab_inventory(), weights="bf16", context_length=32768)
    error = raised.value
    assert "weights need 86.99 GiB" in error.reasons[0]
    changes = [s.change for s in error.suggestions]
    assert "weights_4bit" in changes
    assert [s.cost_rank for s in error.suggestions] == sorted(s.cost_rank for s in error.suggestions)
    assert "4-bit" in str(error)


def test_too_long_a_context_suggests_the_longest_that_fits_first() -> None:
    with pytest.raises(DoesNotFitError) as raised:
        plan_fit(model_path("qwen2.5-32b"), reference_lab_inventory(), weights="bf16", context_length=131072)
    first = raised.value.suggestions[0]
    assert first.change == "shorter_context"
    context = int(first.description.split()[1])
    assert 16384 <= context < 131072
    plan = plan_fit(model_path("qwen2.5-32b"), reference_lab_inventory(), weights="bf16", context_length=context)
    assert plan.max_model_len == context
    assert "KV cache of" in raised.value.reasons[0]


def test_fp8_kv_cache_is_suggested_when_it_halves_the_shortfall() -> None:
    with pytest.raises(DoesNotFitError) as raised:
        plan_fit(model_path("llama-3-8b"), single_node("rtx-3060"), weights="awq", context_length=8192, concurrency=5)
    assert "fp8_kv_cache" in [s.change for s in raised.value.suggestions]
    plan = plan_fit(
        model_path("llama-3-8b"), single_node("rtx-3060"), weights="awq", context_length=8192, concurrency=5,
        kv_cache_dtype="fp8",
    )  # fmt: skip
    assert plan.engine_config["kv_cache_dtype"] == "fp8"


def test_one_more_gpu_is_suggested_when_nothing_cheaper_helps() -> None:
    with pytest.raises(DoesNotFitError) as raised:
        plan_fit(
            model_path("qwen2.5-32b"),
            one_gpu_per_node("rtx-3090", "rtx-3090", "rtx-3090"),
            weights="bf16",
            context_length=4096,
        )
    changes = [s.change for s in raised.value.suggestions]
    assert "one_more_gpu" in changes
    assert changes.index("weights_4bit") < changes.index("one_more_gpu")


def test_cpu_offload_when_allowed() -> None:
    plan = plan_fit(
        model_path("mixtral-8x7b"), reference_lab_inventory(), weights="bf16", context_length=4096,
        limits={"cpu_offload_gib": 16},
    )  # fmt: skip
    assert 0 < plan.cpu_offload_gb <= 16
    assert plan.engine_config["cpu_offload_gb"] == plan.cpu_offload_gb
    assert plan.decode.tokens_per_s < 5, "offloaded weights cross PCIe every token"


# ------------------------------------------------------------------------------------------- bad input


def test_missing_config_fields_are_named() -> None:
    with pytest.raises(PlanInputError, match="missing required field\\(s\\): hidden_size, vocab_size"):
        plan_fit({"num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 8}, single_node("rtx-3090"))


def test_zero_gpus_is_refused() -> None:
    with pytest.raises(PlanInputError, match="no nodes"):
        plan_fit(model_path("llama-3-8b"), {"nodes": []})
    with pytest.raises(PlanInputError, match="no GPUs"):
        plan_fit(model_path("llama-3-8b"), {"nodes": [{"name": "empty", "gpus": []}]})


def test_unknown_dtypes_are_refused() -> None:
    with pytest.raises(PlanInputError, match="unknown weight dtype 'int3'"):
        plan_fit(model_path("llama-3-8b"), single_node("rtx-3090"), weights="int3")
    with pytest.raises(PlanInputError, match="unknown KV cache dtype 'fp4'"):
        plan_fit(model_path("llama-3-8b"), single_node("rtx-3090"), kv_cache_dtype="fp4")


def test_unknown_gpu_class_needs_its_figures() -> None:
    with pytest.raises(PlanInputError, match="unknown GPU class 'gtx-9999'"):
        plan_fit(model_path("llama-3-8b"), single_node("gtx-9999"))
    custom = {"nodes": [{"name": "n", "gpus": [{"class": "gtx-9999", "memory_gib": 24, "bandwidth_gbs": 500}]}]}
    assert plan_fit(model_path("llama-3-8b"), custom, weights="awq").gpus[0].total == pytest.approx(23.69, abs=0.01)


def test_context_beyond_the_model_is_refused() -> None:
    with pytest.raises(PlanInputError, match="exceeds the model's max_position_embeddings 8192"):
        plan_fit(model_path("llama-3-8b"), single_node("rtx-3090"), context_length=16384)


def test_missing_config_file_is_named(tmp_path: Any) -> None:
    with pytest.raises(PlanInputError, match="does not exist"):
        plan_fit(tmp_path / "nope" / "config.json", single_node("rtx-3090"))


def test_bad_limit_is_named() -> None:
    with pytest.raises(PlanInputError, match="gpu_memory_utilization"):
        plan_fit(model_path("llama-3-8b"), single_node("rtx-3090"), limits={"gpu_memory_utilization": 1.5})


def test_mla_models_are_refused_rather_than_mis_sized() -> None:
    with pytest.raises(PlanInputError, match="latent attention"):
        plan_fit(
            {"num_hidden_layers": 4, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 8,
             "vocab_size": 10, "kv_lora_rank": 512},
            single_node("rtx-3090"),
        )  # fmt: skip


def test_what_is_not_modelled_is_said() -> None:
    config = {
        "num_hidden_layers": 4, "hidden_size": 512, "num_attention_heads": 8, "intermediate_size": 1024,
        "vocab_size": 1000, "max_position_embeddings": 32768, "sliding_window": 4096,
        "vision_config": {"hidden_size": 64},
    }  # fmt: skip
    notes = plan_fit(config, single_node("rtx-3090")).notes
    assert any("vision encoder" in note for note in notes)
    assert any("sliding-window attention (4096 tokens)" in note for note in notes)
    qwen = plan_fit(model_path("qwen2.5-32b"), reference_lab_inventory(), weights="awq", context_length=8192)
    assert not any("sliding" in note for note in qwen.notes), "Qwen2's sliding_window equals its context"


@pytest.mark.parametrize(
    ("quantization_config", "weights", "expected"),
    [
        # llm-compressor's FP8 checkpoints (RedHatAI/neuralmagic ...-FP8, ...-FP8-dynamic): compressed-tensors.
        ({"quant_method": "compressed-tensors", "format": "float-quantized",
          "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "float",
                                                                           "strategy": "channel"}}}}, None, None),
        ({"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}, None, None),
        ({"quant_method": "compressed-tensors", "format": "pack-quantized",
          "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "int",
                                                                           "group_size": 128}}}}, None, None),
        ({"quant_method": "bitsandbytes", "load_in_4bit": True}, "awq", None),
        (None, "fp8", "fp8"),  # a 16-bit checkpoint quantized by vLLM as it loads
    ],
)  # fmt: skip
def test_quantization_argument_is_one_vllm_accepts_for_the_checkpoint(
    quantization_config: dict | None, weights: str | None, expected: str | None
) -> None:
    """vLLM takes a checkpoint's quantization from its quantization_config and refuses a `quantization` argument
    that names another method ("Quantization method specified in the model config (compressed-tensors) does not
    match ...", vllm/config/model.py ModelConfig._verify_quantization): only a 16-bit checkpoint gets "fp8"."""
    config = json.loads(model_path("llama-3-8b").read_text())
    if quantization_config:
        config["quantization_config"] = quantization_config
    plan = plan_fit(config, reference_lab_inventory(), weights=weights, context_length=8192)
    assert plan.engine_config["quantization"] == expected
    if quantization_config:
        assert plan.engine_config["quantization"] in (None, quantization_config["quant_method"])
