"""The pure helpers of bench/paired_blocks.py: vLLM's metrics, the engine's batching, schedstat, HAProxy's stats.

No server is started here; the paired benchmark itself runs with `python -m bench.paired_blocks`.
"""

from __future__ import annotations

import math
import os

import pytest

from bench import paired_blocks as pair

# Shaped as vLLM's /metrics answers (two label sets of one gauge, a histogram, a counter).
EXPOSITION = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="tiny-llama"} 3.0
vllm:num_requests_running{engine="1",model_name="tiny-llama"} 2.0
# HELP vllm:iteration_tokens_total Histogram of number of tokens per engine_step.
# TYPE vllm:iteration_tokens_total histogram
vllm:iteration_tokens_total_bucket{engine="0",le="1.0"} 4.0
vllm:iteration_tokens_total_bucket{engine="0",le="+Inf"} 10.0
vllm:iteration_tokens_total_count{engine="0"} 10.0
vllm:iteration_tokens_total_sum{engine="0"} 70.0
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0"} 64.0
vllm:generation_tokens_created{engine="0"} 1.7e9
"""


def test_prometheus_samples_sum_label_sets_and_drop_buckets():
    samples = pair.prometheus_samples(EXPOSITION)
    assert samples[pair.RUNNING] == 5.0
    assert samples[pair.STEPS] == 10.0
    assert samples["vllm:iteration_tokens_total_sum"] == 70.0
    assert samples[pair.GENERATED] == 64.0
    assert not any(name.endswith(("_bucket", "_created")) for name in samples)


def test_engine_batching_from_counter_deltas():
    before = {pair.STEPS: 100, pair.GENERATED: 300, pair.E2E_SUM: 2.0, pair.E2E_COUNT: 10, pair.QUEUE_SUM: 0.1}
    before[pair.QUEUE_COUNT] = 10
    after = {pair.STEPS: 132, pair.GENERATED: 812, pair.E2E_SUM: 8.4, pair.E2E_COUNT: 42, pair.QUEUE_SUM: 0.74}
    after[pair.QUEUE_COUNT] = 42
    batching = pair.engine_batching(before, after, requests=32)
    assert batching["steps_per_request"] == pytest.approx(1.0)
    assert batching["tokens_per_step"] == pytest.approx(16.0)
    assert batching["engine_ms"] == pytest.approx(200.0)
    assert batching["queue_ms"] == pytest.approx(20.0)


def test_engine_batching_is_nan_without_the_counters_or_movement():
    batching = pair.engine_batching({pair.STEPS: 5}, {pair.STEPS: 5}, requests=4)
    assert batching["steps_per_request"] == 0.0
    assert math.isnan(batching["tokens_per_step"])  # no step: no batch to speak of
    assert math.isnan(batching["engine_ms"])


def test_thread_schedstat_sums_the_threads_of_each_process():
    before_run, before_wait = pair.thread_schedstat([os.getpid()])
    sum(range(200_000))
    after_run, after_wait = pair.thread_schedstat([os.getpid()])
    assert after_run > before_run > 0 and after_wait >= before_wait >= 0
    assert pair.thread_schedstat([os.getpid(), os.getpid()])[0] >= 2 * after_run


def test_haproxy_socket_of_reads_the_global_stats_socket():
    config = "global\n    log 127.0.0.1:514 local0 info\n    stats socket /tmp/h/admin.sock mode 666 level admin\n"
    assert pair.haproxy_socket_of(config) == "/tmp/h/admin.sock"
    assert pair.haproxy_socket_of("global\n    maxconn 4096\n") is None


SHOW_STAT = """\
# pxname,svname,qcur,scur,stot,bck,rtime,ttime,
http_frontend,FRONTEND,,32,41,,,,
http-lab-llm,SERVE_REPLICA_lab-llm-x,0,5,70,0,190,470,
http-lab-llm,SERVE_PROXY_ACTOR-fallback-y,0,0,0,1,0,0,
http-lab-llm,BACKEND,0,5,70,0,190,470,
stats,FRONTEND,,1,3,,,,
"""


def test_haproxy_rows_split_replicas_from_the_fallback():
    rows = pair.haproxy_rows(SHOW_STAT)
    assert rows[0]["svname"] == "FRONTEND"
    active, backup = pair.replica_rows(rows)
    assert [row["svname"] for row in active] == ["SERVE_REPLICA_lab-llm-x"]
    assert active[0]["scur"] == "5"
    assert [row["svname"] for row in backup] == ["SERVE_PROXY_ACTOR-fallback-y"]
    with pytest.raises(ValueError, match="show stat"):
        pair.haproxy_rows("Unknown command\n")
