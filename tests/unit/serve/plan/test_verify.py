"""The plan against the running engine: KV cache blocks read back from vLLM's metrics or log, compared."""

from __future__ import annotations

import io
import json

import pytest

from lab_llm.plan.verify import (
    KvCacheAllocation,
    allocations_from_log,
    allocations_from_metrics,
    compare,
    compare_text,
    main,
)

# vLLM's own /metrics (vllm/v1/metrics/loggers.py: one label per CacheConfig field, value 1).
VLLM_METRICS = """\
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",calculate_kv_scales="False",cpu_offload_gb="0",\
enable_prefix_caching="True",engine="0",gpu_memory_utilization="0.97",num_cpu_blocks="None",\
num_gpu_blocks="11623",prefix_caching_hash_algo="sha256",swap_space="4"} 1.0
# HELP vllm:num_requests_running Number of requests in model execution batches.
vllm:num_requests_running{engine="0",model_name="dolphin3"} 0.0
"""

# The same gauge through Ray Serve: name sanitised and prefixed by Ray's exporter, Ray's own labels added.
RAY_METRICS = """\
# TYPE ray_vllm_cache_config_info gauge
ray_vllm_cache_config_info{Component="core_worker",NodeAddress="10.0.0.31",SessionName="session_2026",\
Version="2.60.0",WorkerId="ab12",block_size="16",cache_dtype="auto",engine="0",num_gpu_blocks="11623",\
served_model_name="x{y}"} 1.0
ray_vllm_cache_config_info{Component="core_worker",NodeAddress="10.0.0.32",block_size="16",engine="0",\
num_gpu_blocks="9000"} 1.0
ray_serve_num_http_requests_total{route="/"} 3.0
"""

LOG = """\
(ServeReplica:lab-llm:LLMServer pid=123) INFO 11-30 10:00:01 [kv_cache_utils.py:2329] GPU KV cache size: \
185,968 tokens, Maximum concurrency for 32,768 tokens per request: 5.68x
"""


def test_metrics_from_vllm_and_through_ray() -> None:
    assert allocations_from_metrics(VLLM_METRICS) == [KvCacheAllocation(11623, 16, "metrics")]
    assert [a.num_gpu_blocks for a in allocations_from_metrics(RAY_METRICS)] == [11623, 9000]
    assert allocations_from_metrics("vllm:num_requests_running 1\n") == []


def test_usable_tokens_leave_out_the_null_block() -> None:
    assert KvCacheAllocation(11623, 16, "metrics").tokens == 185952  # the reference lab's PP=2 plan's kv_cache_tokens


def test_log_line() -> None:
    (allocation,) = allocations_from_log(LOG)
    assert allocation.num_gpu_blocks == 11623
    assert allocation.tokens == 185952
    assert allocations_from_log("CPU KV cache size: 1,024 tokens")[0].num_gpu_blocks == 64


def test_agreement_within_five_percent_is_quiet() -> None:
    result = compare(185952, KvCacheAllocation(11623 - 500, 16, "metrics"))
    assert result.difference_percent == -4.3
    assert result.warning == ""


def test_more_than_five_percent_warns_with_both_numbers_and_the_cause() -> None:
    low = compare(185952, KvCacheAllocation(10000, 16, "metrics"))
    assert low.allocated_tokens == 159984
    assert low.difference_percent == -14.0
    assert "vLLM allocated a KV cache of 159984 tokens (10000 blocks of 16)" in low.warning
    assert "the fit plan predicted 185952 (-14.0 %)" in low.warning
    assert "more memory outside the KV cache than the plan's estimates" in low.warning
    high = compare(100000, KvCacheAllocation(7000, 16, "metrics"))
    assert "+12.0 %" in high.warning
    assert "larger than what vLLM measured" in high.warning


def test_several_engines_are_judged_by_the_smallest() -> None:
    result = compare_text(185952, RAY_METRICS)
    assert result.num_gpu_blocks == 9000
    assert result.source == "metrics"


def test_nothing_to_read_is_an_error() -> None:
    with pytest.raises(ValueError, match="no vllm cache_config_info metric"):
        compare_text(1000, "ray_serve_num_http_requests_total 3\n")
    with pytest.raises(ValueError, match="positive"):
        compare(0, KvCacheAllocation(10, 16, "log"))


def test_command_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(VLLM_METRICS))
    assert main(["--planned-tokens", "185952"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["allocated_tokens"] == 185952
    assert answer["warning"] == ""
    monkeypatch.setattr("sys.stdin", io.StringIO("nothing"))
    assert main(["--planned-tokens", "185952"]) == 2
    assert "error" in json.loads(capsys.readouterr().out)
