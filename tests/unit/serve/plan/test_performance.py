"""The decode-speed estimate: written out for the reference lab's hand-tuned layout, and against every published
figure it uses."""

from __future__ import annotations

import pytest

from lab_llm.plan.performance import PIPELINE_STAGE_OVERHEAD_MS, all_reduce_ms
from lab_llm.plan.reference_table import PUBLISHED_DECODE, estimate_for
from tests.unit.serve.plan.plan_inputs import MODELS_DIR
from tests.unit.serve.plan.test_planner import lab_model_plan

# The reference lab's deployment tuned by hand: Dolphin3.0-R1-Mistral-24B-AWQ, PP=2 on two 3090s.
HAND_TUNED_TOKENS_PER_S = 40.0


def test_hand_tuned_layout_prediction_written_out() -> None:
    # Per stage and token: 20 AWQ layers (288,747,520 B each, see test_memory) + their KV cache for a 1024-token
    # context (20 x 2 x 8 heads x 128 x 2 B x 1024); the last stage also reads lm_head (131072 x 5120 x 2 B).
    stage = 20 * 288_747_520 + 20 * 2 * 8 * 128 * 2 * 1024
    last = stage + 131072 * 5120 * 2
    memory_ms = (stage + last) / (936e9 * 0.8) * 1000  # RTX 3090 at 80 % of 936 GB/s
    hand_off_ms = 0.250 + (2 * 5120 * 2) / 1.25e9 * 1000  # hidden state + residual over 10GbE
    stage_boundary_ms = 6.8  # one boundary between the two stages (vllm#6610, #12322: latency, not bytes)
    expected = 1000 / (memory_ms + hand_off_ms + 0.5 + stage_boundary_ms)
    plan = lab_model_plan(concurrency=4)
    assert (plan.tensor_parallel_size, plan.pipeline_parallel_size) == (1, 2)
    assert plan.decode.tokens_per_s == pytest.approx(expected, abs=0.05)
    assert plan.decode.memory_ms == pytest.approx(memory_ms, abs=0.01)
    assert plan.decode.overhead_ms == pytest.approx(0.5 + PIPELINE_STAGE_OVERHEAD_MS)
    # The boundary cost was set from this figure, so it lands on it; without it the estimate was 37 % high.
    assert plan.decode.tokens_per_s == pytest.approx(HAND_TUNED_TOKENS_PER_S, rel=0.02)
    assert 1000 / (memory_ms + hand_off_ms + 0.5) / HAND_TUNED_TOKENS_PER_S > 1.35


@pytest.mark.parametrize("figure", PUBLISHED_DECODE, ids=lambda f: f.setup.split(",")[0] + f" {f.gpus}")
def test_estimate_against_every_published_figure(figure) -> None:
    """Within 20 % of each published single-stream figure, on the layout the figure was measured with."""
    plan = estimate_for(figure, MODELS_DIR)
    assert plan["pipeline_parallel_size"] == figure.pipeline_parallel_size
    assert plan["tensor_parallel_size"] == 1
    error = plan["decode"]["tokens_per_s"] / figure.tokens_per_s - 1
    assert abs(error) <= 0.20, f"{figure.setup}: estimate {plan['decode']['tokens_per_s']} vs {figure.tokens_per_s}"


def test_tp_over_10gbe_costs_more_than_it_saves() -> None:
    # 2 all-reduces per layer: over 10GbE (250 us) 64 of them add 16 ms, more than halving 20 ms of reads saves.
    per_all_reduce = all_reduce_ms(4096 * 2, 2, 1.25, 250)
    assert per_all_reduce == pytest.approx(0.250 + 4096 * 2 / 1.25e9 * 1000, rel=1e-6)
    assert 64 * per_all_reduce > 10
    assert all_reduce_ms(4096 * 2, 1, 1.25, 250) == 0


def test_the_3060_stage_is_slower_per_layer() -> None:
    plan = lab_model_plan(concurrency=4)
    with_3060 = [a for a in plan.alternatives if "rtx-3060" in a.stages]
    assert with_3060
    assert all(a.decode_tokens_per_s < plan.decode.tokens_per_s for a in with_3060)
