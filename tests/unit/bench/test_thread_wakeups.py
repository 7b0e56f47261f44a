"""The pure helpers of bench/thread_wakeups.py: /proc task counters, perf stat and perf script parsing, per-request
figures.

No server and no perf is started here; the measurement itself runs as `python -m bench.thread_wakeups` (as root).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from bench import thread_wakeups as wakeups

STAT = "4242 (a b) c (d) S 1 4242 4242 0 -1 4194560 1000 0 3 0 150 30 7 8 20 0 12 0 555 0 0\n"
STATUS = "Name:\tpython3\nState:\tS (sleeping)\nvoluntary_ctxt_switches:\t1200\nnonvoluntary_ctxt_switches:\t34\n"


def test_thread_counters_read_schedstat_stat_and_status():
    counters = wakeups.thread_counters("9000000 2000000 77\n", STAT, STATUS)
    assert counters == wakeups.ThreadCounters(
        run_ns=9_000_000,
        wait_ns=2_000_000,
        slices=77,
        user_ticks=150,
        system_ticks=30,
        voluntary=1200,
        nonvoluntary=34,
    )


@pytest.mark.parametrize(
    ("stat", "status", "message"),
    [
        ("4242 (x) S 1 2 3", STATUS, "not a /proc stat line"),
        (STAT, "Name:\tpython3\nvoluntary_ctxt_switches:\t1\n", "no context switch counters"),
    ],
)
def test_thread_counters_reject_incomplete_files(stat, status, message):
    with pytest.raises(ValueError, match=message):
        wakeups.thread_counters("1 2 3", stat, status)


def test_counters_of_a_live_thread_grow_with_its_work():
    if not Path(f"/proc/{os.getpid()}/task/{threading.get_native_id()}/schedstat").exists():
        pytest.skip("no /proc schedstat on this system")
    before = wakeups.read_thread(os.getpid(), threading.get_native_id())
    sum(range(200_000))
    after = wakeups.read_thread(os.getpid(), threading.get_native_id())
    assert after.run_ns > before.run_ns
    assert wakeups.read_thread(os.getpid(), 2**22 + 1) == wakeups.ThreadCounters()


def test_process_delta_counts_new_threads_from_zero():
    one = wakeups.ThreadCounters(run_ns=10, voluntary=1)
    two = wakeups.ThreadCounters(run_ns=25, voluntary=4)
    newcomer = wakeups.ThreadCounters(run_ns=7, voluntary=2)
    assert wakeups.process_delta({1: one}, {1: two, 2: newcomer}) == wakeups.ThreadCounters(run_ns=22, voluntary=5)


def test_perf_stat_counts_by_syscall_name():
    text = (
        "# started on Mon Nov 30 21:00:00 2026\n\n"
        "1548,,raw_syscalls:sys_enter,92241369,100.00,16.991,K/sec\n"
        "774,,syscalls:sys_enter_getpid,92241369,100.00,8.496,K/sec\n"
        "<not counted>,,syscalls:sys_enter_futex,0,100.00,,\n"
        "91.11,msec,task-clock,91106244,100.00,0.062,CPUs utilizedEvents disabled\n"
    )
    assert wakeups.perf_stat_counts(text) == {
        "raw_syscalls:sys_enter": 1548,
        "getpid": 774,
        "futex": 0,
        "task-clock": 91,
    }


def test_wakers_are_named_by_the_mechanism_on_their_call_chain():
    script = (
        "swapper     0 \n\tffffffff813aa9c4 try_to_wake_up\n\tffffffff814204ce hrtimer_wakeup\n\n"
        "haproxy  1234 \n\tffffffff813aa9c4 try_to_wake_up\n\tffffffff81000001 ep_poll_callback\n"
        "\tffffffff81000002 sock_def_readable\n\tffffffff81000003 tcp_data_queue\n\n"
        "ray::Serve  77 \n\tffffffff813aa9c4 try_to_wake_up\n\tffffffff81000004 futex_wake\n\n"
        "VLLM::Worker  5 \n\tffffffff813aa9c4 try_to_wake_up\n\tffffffff81731e3a ep_poll_callback\n"
        "\tffffffff81735d54 timerfd_tmrproc\n\tffffffff81420bee __hrtimer_run_queues\n\n"
        "python3  9 \n\tffffffff813aa9c4 try_to_wake_up\n"
    )
    assert wakeups.wakers_by_mechanism(script) == [
        "timer expiry",
        "haproxy (tcp)",
        "ray::Serve (futex)",
        "timer expiry",
        "python3 (other)",
    ]


def test_per_request_figures_and_medians():
    delta = wakeups.ThreadCounters(
        run_ns=40_000_000, wait_ns=8_000_000, slices=20, user_ticks=3, system_ticks=1, voluntary=30, nonvoluntary=2
    )
    figures = wakeups.per_request(delta, 10, ticks_per_s=100)
    assert figures == pytest.approx(
        {
            "cpu_ms": 4.0,
            "wait_ms": 0.8,
            "user_ms": 3.0,
            "system_ms": 1.0,
            "slices": 2.0,
            "voluntary": 3.0,
            "nonvoluntary": 0.2,
        }
    )
    assert wakeups.per_request(delta, 0, ticks_per_s=100) == {}
    assert wakeups.medians([{"a": 1.0, "b": 5.0}, {"a": 3.0}, {"a": 2.0, "b": 1.0}]) == {"a": 2.0, "b": 1.0}
