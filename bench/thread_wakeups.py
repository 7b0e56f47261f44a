"""Wake-ups, syscalls and CPU per request of the front's event-loop thread: lab-llm's engine replica against vLLM's
API server, both serving at once, in alternating blocks (issue 12).

The thread that runs uvicorn and vLLM's OpenAI layer is, in `vllm serve`, the API server's main thread and, in
lab-llm, the thread `AsyncIO Thread: default` of the engine's Ray replica (found by name with `py-spy dump --json`).
Both servers are started with `serve_overhead.py`'s own builders and get the same closed loads (c=1 chat completions
of `--max-tokens` tokens, plain and streamed), one block of `--block-requests` each, the order of the two servers
flipped every block. Around every block the script reads, for the loop thread and for the whole process:

- CPU from `/proc/<pid>/task/<tid>/schedstat` (ns on a CPU, ns runnable but waiting, time slices), user and system
  ticks from `.../stat` (fields 14 and 15, `SC_CLK_TCK` per second), voluntary and involuntary context switches
  from `.../status` (proc(5)); a voluntary switch is the thread blocking (in `epoll_wait`, a futex, a full socket),
  so every one of them is a later wake-up;
- with `--perf` (default; needs root or perf_event_paranoid <= 1 and tracefs), the loop thread's syscalls by type
  from `perf stat -t <tid> -e raw_syscalls:sys_enter -e 'syscalls:sys_enter_*'`, enabled and disabled through
  perf's control FIFO exactly around the load. perf's own cost is the same for both servers; compare counts.

All figures are divided by the block's successful requests and reported as medians over the blocks, with the paired
difference (lab-llm minus vLLM within each block). A 10 s window with no request, both servers idle at once, gives
the per-second part (timers, health checks, metric pushes) that a block's per-request figures also carry.

With `--profile`, one more block per server and mode records (a) who wakes the loop thread
(`perf record -a -e sched:sched_waking --filter 'pid == <tid>'`: the sample's task is the waker) and (b) where the
thread's CPU goes by shared object and symbol (`perf record -t <tid> -e cpu-clock`), printed as `perf report`
summaries; the perf.data files stay in `--out`.

Usage (as root, under the heavy lock): `.venv/bin/python -m bench.thread_wakeups [--blocks 6] [--profile]`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

from bench.serve_overhead import (
    RAY_ROLES,
    CpuProbe,
    Server,
    add_server_arguments,
    lab_llm_server,
    run_load,
    run_stream_load,
    venv_tool,
    vllm_server,
)

LOOP_THREAD_NAME = "AsyncIO Thread: default"
SYSCALL_EVENT_PREFIX = "syscalls:sys_enter_"


# Pure helpers ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ThreadCounters:
    """The kernel's accounting of one thread (or the sum over a process's threads) at one moment.

    run_ns / wait_ns / slices: /proc/.../schedstat (time on a CPU, time runnable but waiting for one, time slices);
    user_ticks / system_ticks: /proc/.../stat fields 14 and 15; voluntary / nonvoluntary: context switches from
    /proc/.../status.
    """

    run_ns: int = 0
    wait_ns: int = 0
    slices: int = 0
    user_ticks: int = 0
    system_ticks: int = 0
    voluntary: int = 0
    nonvoluntary: int = 0

    def __add__(self, other: ThreadCounters) -> ThreadCounters:
        return ThreadCounters(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __sub__(self, other: ThreadCounters) -> ThreadCounters:
        return ThreadCounters(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))


def thread_counters(schedstat: str, stat: str, status: str) -> ThreadCounters:
    """ThreadCounters from the texts of a task's schedstat, stat and status files (proc(5)).

    Raises ValueError if a file lacks its fields.
    """
    run_ns, wait_ns, slices = (int(value) for value in schedstat.split()[:3])
    closing = stat.rfind(")")
    stat_fields = stat[closing + 1 :].split() if closing >= 0 else []
    if len(stat_fields) < 13:
        raise ValueError(f"not a /proc stat line: {stat[:80]!r}")
    switches: dict[str, int] = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
            switches[key] = int(value)
    if len(switches) != 2:
        raise ValueError("status has no context switch counters")
    return ThreadCounters(
        run_ns=run_ns,
        wait_ns=wait_ns,
        slices=slices,
        user_ticks=int(stat_fields[11]),
        system_ticks=int(stat_fields[12]),
        voluntary=switches["voluntary_ctxt_switches"],
        nonvoluntary=switches["nonvoluntary_ctxt_switches"],
    )


def perf_stat_counts(text: str) -> dict[str, int]:
    """Event counts from `perf stat -x,` output: {event: count}; `syscalls:sys_enter_X` becomes `X`,
    `<not counted>` (the thread never ran while enabled) 0. Comment and control lines are skipped."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split(",")
        if len(parts) < 3 or line.startswith("#"):
            continue
        value, event = parts[0], parts[2]
        if not event:
            continue
        name = event.removeprefix(SYSCALL_EVENT_PREFIX)
        try:
            counts[name] = round(float(value))
        except ValueError:
            counts[name] = 0
    return counts


def per_request(delta: ThreadCounters, requests: int, ticks_per_s: int) -> dict[str, float]:
    """A counter delta as figures per request: cpu/wait/user/system in ms, slices and switches as counts."""
    if requests <= 0:
        return {}
    tick_ms = 1000 / ticks_per_s
    return {
        "cpu_ms": delta.run_ns / 1e6 / requests,
        "wait_ms": delta.wait_ns / 1e6 / requests,
        "user_ms": delta.user_ticks * tick_ms / requests,
        "system_ms": delta.system_ticks * tick_ms / requests,
        "slices": delta.slices / requests,
        "voluntary": delta.voluntary / requests,
        "nonvoluntary": delta.nonvoluntary / requests,
    }


def medians(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Key-wise median over the rows (a key missing in a row counts as 0 there)."""
    keys = sorted({key for row in rows for key in row})
    return {key: statistics.median(row.get(key, 0.0) for row in rows) for key in keys} if rows else {}


# Kernel functions on a wake-up's call chain that name how the thread was woken, the most specific first (an fd
# that becomes ready wakes an `epoll_wait` through ep_poll_callback, under the eventfd or socket write that did it).
WAKE_MECHANISMS: tuple[tuple[str, str], ...] = (
    ("hrtimer_wakeup", "timer"),
    ("timerfd_tmrproc", "timer"),
    ("futex_wake", "futex"),
    ("eventfd_", "eventfd"),
    ("pipe_write", "pipe"),
    ("unix_", "unix socket"),
    ("tcp_", "tcp"),
    ("sock_def_readable", "socket"),
    ("ep_poll_callback", "epoll"),
    ("signal", "signal"),
)


def wakers_by_mechanism(script: str) -> list[str]:
    """One `<waker comm> (<mechanism>)` (or `timer expiry`) per sample of `perf script -F comm,tid,ip,sym` over
    `sched:sched_waking` recorded with call chains: the waker is the sample's task, the mechanism the first
    WAKE_MECHANISMS marker found anywhere on its chain (`other` if none)."""
    found: list[str] = []
    for sample in script.strip().split("\n\n"):
        lines = [line for line in sample.splitlines() if line.strip()]
        if not lines:
            continue
        comm = lines[0].split()[0]
        symbols = [line.split()[1] if len(line.split()) > 1 else "" for line in lines[1:]]
        mechanism = next(
            (name for marker, name in WAKE_MECHANISMS if any(symbol.startswith(marker) for symbol in symbols)), "other"
        )
        # A timer fires in whatever task the interrupt finds on the CPU: its name says nothing.
        found.append("timer expiry" if mechanism == "timer" else f"{comm} ({mechanism})")
    return found


# Reading /proc -----------------------------------------------------------------------------------------------------
def read_thread(pid: int, tid: int) -> ThreadCounters:
    """Counters of one thread; zeros once it has ended."""
    task = Path(f"/proc/{pid}/task/{tid}")
    try:
        return thread_counters(
            (task / "schedstat").read_text(), (task / "stat").read_text(), (task / "status").read_text()
        )
    except (FileNotFoundError, ProcessLookupError):
        return ThreadCounters()


def read_threads(pid: int) -> dict[int, ThreadCounters]:
    """Counters of every thread of a process, by thread id."""
    try:
        tids = [int(name) for name in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        return {}
    return {tid: read_thread(pid, tid) for tid in tids}


def process_delta(before: dict[int, ThreadCounters], after: dict[int, ThreadCounters]) -> ThreadCounters:
    """Sum over the threads of after minus before (threads started in between count from zero)."""
    total = ThreadCounters()
    for tid, counters in after.items():
        total = total + (counters - before.get(tid, ThreadCounters()))
    return total


def thread_names(pid: int) -> dict[int, str]:
    """Every thread's name: the Python thread name where Python knows the thread (`py-spy dump --json`), else the
    kernel's `comm` (Ray's and ZMQ's native threads)."""
    names: dict[int, str] = {}
    for tid in read_threads(pid):
        with contextlib.suppress(FileNotFoundError):
            names[tid] = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
    dump = subprocess.run(
        [venv_tool("py-spy"), "dump", "--json", "--nonblocking", "--pid", str(pid)],
        check=True,
        capture_output=True,
        text=True,
    )
    for thread in json.loads(dump.stdout):
        if thread.get("os_thread_id") and thread.get("thread_name"):
            names[int(thread["os_thread_id"])] = f"py:{thread['thread_name']}"
    return names


def by_thread_name(
    before: dict[int, ThreadCounters],
    after: dict[int, ThreadCounters],
    names: dict[int, str],
    requests: int,
    ticks_per_s: int,
) -> dict[str, dict[str, float]]:
    """Per-request figures of the process's threads, summed by thread name (`?` for threads started since the names
    were read), only those that ran."""
    summed: dict[str, ThreadCounters] = {}
    for tid, counters in after.items():
        delta = counters - before.get(tid, ThreadCounters())
        if delta.run_ns:
            name = names.get(tid, "?")
            summed[name] = summed.get(name, ThreadCounters()) + delta
    return {name: per_request(delta, requests, ticks_per_s) for name, delta in summed.items()}


def loop_thread_of_replica(names: dict[int, str]) -> int:
    """The OS thread id of the replica's asyncio loop thread, by its Python name."""
    for tid, name in names.items():
        if name == f"py:{LOOP_THREAD_NAME}":
            return tid
    raise RuntimeError(f"no thread {LOOP_THREAD_NAME!r} among {sorted(set(names.values()))}")


# perf --------------------------------------------------------------------------------------------------------------
class PerfSession:
    """One perf command started disabled (`-D -1`) and switched on and off through its control FIFO, so that it
    counts or records exactly the load, not its own start-up."""

    def __init__(self, args: Sequence[str], workdir: Path, name: str) -> None:
        self.ctl = workdir / f"{name}.ctl"
        self.ack = workdir / f"{name}.ack"
        for fifo in (self.ctl, self.ack):
            fifo.unlink(missing_ok=True)
            os.mkfifo(fifo)
        control = f"--control=fifo:{self.ctl},{self.ack}"
        self.process = subprocess.Popen(
            ["perf", args[0], "-D", "-1", control, *args[1:]],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        # O_RDWR on both FIFOs: neither open blocks on perf having opened its end.
        self.ctl_fd = os.open(self.ctl, os.O_RDWR)
        self.ack_fd = os.open(self.ack, os.O_RDWR)
        # A command sent while perf still sets up its events can go unanswered (seen with `record -a`).
        time.sleep(1.0)

    def _command(self, word: str) -> None:
        os.write(self.ctl_fd, f"{word}\n".encode())
        if not select.select([self.ack_fd], [], [], 30.0)[0]:
            self.process.kill()
            raise RuntimeError(f"perf did not answer {word!r}: {self.process.communicate()[1][-500:]}")
        answer = os.read(self.ack_fd, 16)
        if not answer.startswith(b"ack"):
            raise RuntimeError(f"perf did not acknowledge {word!r}: {answer!r}")

    @contextlib.contextmanager
    def enabled(self) -> Iterator[None]:
        self._command("enable")
        try:
            yield
        finally:
            self._command("disable")

    def close(self) -> str:
        """Stop perf (SIGINT, as at the end of a `perf stat` run) and return its stderr."""
        self.process.send_signal(signal.SIGINT)
        _, stderr = self.process.communicate(timeout=60)
        os.close(self.ctl_fd)
        os.close(self.ack_fd)
        return stderr


def syscall_counter(tid: int, workdir: Path, name: str) -> tuple[PerfSession, Path]:
    output = workdir / f"{name}.stat"
    events = ["-e", "raw_syscalls:sys_enter", "-e", f"{SYSCALL_EVENT_PREFIX}*"]
    return PerfSession(["stat", "-x,", "-o", str(output), "-t", str(tid), *events], workdir, name), output


# Loads -------------------------------------------------------------------------------------------------------------
def run_block(server: Server, mode: str, requests: int, max_tokens: int) -> tuple[int, float]:
    """One closed c=1 load; (successful requests, seconds)."""
    if mode == "stream":
        latencies, *_, duration, _tokens, samples = asyncio.run(
            run_stream_load(server.base_url, server.headers, requests, 1, max_tokens)
        )
    else:
        latencies, _errors, duration, _tokens, samples = asyncio.run(
            run_load(server.base_url, server.headers, requests, 1, max_tokens)
        )
    for sample in samples:
        print(f"     error: {sample}", flush=True)
    return len(latencies), duration


@dataclass
class Target:
    """The server and the thread measured in it."""

    server: Server
    pid: int
    tid: int
    names: dict[int, str] = field(default_factory=dict)


@dataclass
class BlockResult:
    block: int
    server: str
    mode: str
    requests: int
    seconds: float
    loop: dict[str, float]
    process: dict[str, float]
    syscalls: dict[str, float]
    threads: dict[str, dict[str, float]] = field(default_factory=dict)


def measure_block(
    target: Target, mode: str, block: int, args: argparse.Namespace, workdir: Path, ticks_per_s: int
) -> BlockResult:
    perf: tuple[PerfSession, Path] | None = None
    if args.perf:
        perf = syscall_counter(target.tid, workdir, f"{target.server.name}-{mode}-{block}")
    threads_before = read_threads(target.pid)
    with perf[0].enabled() if perf else contextlib.nullcontext():
        requests, seconds = run_block(target.server, mode, args.block_requests, args.max_tokens)
    threads_after = read_threads(target.pid)
    syscalls: dict[str, float] = {}
    if perf:
        perf[0].close()
        counts = perf_stat_counts(perf[1].read_text())
        syscalls = {name: count / requests for name, count in counts.items() if count and requests}
    loop = threads_after.get(target.tid, ThreadCounters()) - threads_before.get(target.tid, ThreadCounters())
    return BlockResult(
        block=block,
        server=target.server.name,
        mode=mode,
        requests=requests,
        seconds=seconds,
        loop=per_request(loop, requests, ticks_per_s),
        process=per_request(process_delta(threads_before, threads_after), requests, ticks_per_s),
        threads=by_thread_name(threads_before, threads_after, target.names, requests, ticks_per_s),
        syscalls=syscalls,
    )


def measure_idle(targets: Sequence[Target], seconds: float, workdir: Path, args: argparse.Namespace) -> dict:
    """Both servers idle at once for `seconds`: per second, the loop thread's counters and syscalls."""
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    sessions = [syscall_counter(t.tid, workdir, f"{t.server.name}-idle") if args.perf else None for t in targets]
    before = [read_thread(t.pid, t.tid) for t in targets]
    with contextlib.ExitStack() as stack:
        for session in sessions:
            if session:
                stack.enter_context(session[0].enabled())
        time.sleep(seconds)
    after = [read_thread(t.pid, t.tid) for t in targets]
    result = {}
    for target, session, first, last in zip(targets, sessions, before, after, strict=True):
        syscalls: dict[str, float] = {}
        if session:
            session[0].close()
            syscalls = {k: v / seconds for k, v in perf_stat_counts(session[1].read_text()).items() if v}
        # "Per request" with one request per second of idle time: figures per second.
        rates = per_request(last - first, 1, ticks_per_s)
        result[target.server.name] = {"loop": {k: v / seconds for k, v in rates.items()}, "syscalls": syscalls}
    return result


def profile_block(target: Target, mode: str, args: argparse.Namespace, out: Path, tid: int | None = None) -> None:
    """Who wakes the loop thread (or thread `tid` of the target's process), and where its CPU goes, over one block;
    perf report summaries printed."""
    tid = tid or target.tid
    name = f"{target.server.name}-{mode}" + (f"-{tid}" if tid != target.tid else "")
    wakers_file, cpu_file = out / f"{name}-wakers.data", out / f"{name}-cpu.data"
    wakers = PerfSession(
        [
            "record",
            "-q",
            "-a",
            "-e",
            "sched:sched_waking",
            "-g",
            "--filter",
            f"pid == {tid}",
            "-o",
            str(wakers_file),
        ],
        out,
        f"{name}-wakers",
    )
    cpu = PerfSession(
        ["record", "-q", "-t", str(tid), "-e", "cpu-clock", "-F", "999", "-g", "-o", str(cpu_file)],
        out,
        f"{name}-cpu",
    )
    with wakers.enabled(), cpu.enabled():
        requests, _seconds = run_block(target.server, mode, args.block_requests, args.max_tokens)
    wakers.close()
    cpu.close()
    script = subprocess.run(
        ["perf", "script", "-i", str(wakers_file), "-F", "comm,tid,ip,sym"], capture_output=True, text=True, check=True
    )
    by_waker = collections.Counter(wakers_by_mechanism(script.stdout))
    print(f"\n-- {name}: who woke thread {tid} ({target.names.get(tid, '?')}), per request ({requests} requests)")
    for waker, count in by_waker.most_common(15):
        print(f"   {count / requests:7.2f}  {waker}")
    for sort in ("dso", "dso,sym"):
        report = subprocess.run(
            ["perf", "report", "-i", str(cpu_file), "--stdio", "--no-children", "-g", "none", "--sort", sort],
            capture_output=True,
            text=True,
            check=False,
        )
        lines = [line for line in report.stdout.splitlines() if line.strip() and not line.startswith("#")]
        print(f"-- {name}: loop thread CPU by {sort} (cpu-clock samples at 999 Hz)")
        for line in lines[: 12 if sort == "dso" else 40]:
            print(f"   {line}")


# Report ------------------------------------------------------------------------------------------------------------
LOOP_KEYS = ("cpu_ms", "user_ms", "system_ms", "wait_ms", "slices", "voluntary", "nonvoluntary")


def print_summary(results: Sequence[BlockResult], names: Sequence[str], modes: Sequence[str]) -> None:
    for mode in modes:
        rows = {name: [r for r in results if r.server == name and r.mode == mode] for name in names}
        print(f"\n== c=1 {mode}: per request, median of {min(len(v) for v in rows.values())} blocks")
        print(f"   {'':28}" + "".join(f"{name:>14}" for name in names) + f"{'diff (paired)':>16}")
        paired: dict[str, list[float]] = collections.defaultdict(list)
        for a, b in zip(rows[names[0]], rows[names[1]], strict=True):
            for scope in ("loop", "process", "syscalls"):
                ours, theirs = getattr(a, scope), getattr(b, scope)
                for key in set(ours) | set(theirs):
                    paired[f"{scope}.{key}"].append(ours.get(key, 0.0) - theirs.get(key, 0.0))
        med = {name: {s: medians([getattr(r, s) for r in rows[name]]) for s in ("loop", "process", "syscalls")}
               for name in names}  # fmt: skip
        syscall_keys = sorted(
            set(med[names[0]]["syscalls"]) | set(med[names[1]]["syscalls"]),
            key=lambda k: -max(med[n]["syscalls"].get(k, 0.0) for n in names),
        )
        for scope, keys in (("loop", LOOP_KEYS), ("process", LOOP_KEYS), ("syscalls", syscall_keys[:25])):
            for key in keys:
                values = [med[name][scope].get(key, 0.0) for name in names]
                diff = statistics.median(paired.get(f"{scope}.{key}", [0.0]))
                label = f"{scope}.{key}"
                print(f"   {label:28}" + "".join(f"{v:14.3f}" for v in values) + f"{diff:+16.3f}")
        for name in names:
            threads = medians([{k: v["cpu_ms"] for k, v in r.threads.items()} for r in rows[name]])
            switches = medians([{k: v["voluntary"] for k, v in r.threads.items()} for r in rows[name]])
            top = sorted(threads.items(), key=lambda item: -item[1])[:8]
            print(
                f"   {name} threads, ms CPU / voluntary switches per request: "
                + ", ".join(f"{thread} {cpu:.2f}/{switches.get(thread, 0.0):.1f}" for thread, cpu in top)
            )
        rates = {name: statistics.median(r.requests / r.seconds for r in rows[name]) for name in names}
        print("   req/s: " + ", ".join(f"{name} {rate:.1f}" for name, rate in rates.items()))


def start(server: Server, timeout: float, warmup: int, max_tokens: int) -> None:
    print(f"== {server.name}: starting, log {server.log_path}", flush=True)
    server.start()
    server.wait_ready(timeout)
    asyncio.run(run_load(server.base_url, server.headers, warmup, 1, max_tokens))
    asyncio.run(run_stream_load(server.base_url, server.headers, warmup, 1, max_tokens))


def find_targets(vllm: Server, lab: Server) -> list[Target]:
    assert lab.process is not None and vllm.process is not None
    probe = CpuProbe(lab.process.pid, RAY_ROLES)
    probe.discover()
    replicas = probe.pids_by_role.get("llm_server", [])
    if len(replicas) != 1:
        raise RuntimeError(f"expected one engine replica, found {replicas}")
    lab_names, vllm_names = thread_names(replicas[0]), thread_names(vllm.process.pid)
    return [
        Target(lab, replicas[0], loop_thread_of_replica(lab_names), lab_names),
        Target(vllm, vllm.process.pid, vllm.process.pid, vllm_names),
    ]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_server_arguments(parser)
    parser.add_argument("--blocks", type=int, default=6, help="blocks per mode and server")
    parser.add_argument("--block-requests", type=int, default=40)
    parser.add_argument("--modes", default="plain,stream", help="plain, stream or both (comma-separated)")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=16)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--perf", action=argparse.BooleanOptionalAction, default=True, help="count syscalls")
    parser.add_argument("--profile", action="store_true", help="also record wakers and CPU by symbol")
    parser.add_argument(
        "--profile-thread",
        action="append",
        default=[],
        help="with --profile, also profile the threads of this name (as in the summary, e.g. py:MainThread)",
    )
    parser.add_argument("--out", type=Path, help="directory for the JSON results and perf.data files")
    parser.add_argument("--vllm-port", type=int, default=8031)
    parser.add_argument("--app-port", type=int, default=8033)
    args = parser.parse_args(argv)
    args.modes = [mode for mode in args.modes.split(",") if mode]
    if not set(args.modes) <= {"plain", "stream"} or args.blocks < 1 or args.block_requests < 1:
        parser.error("--modes takes plain and/or stream; --blocks and --block-requests must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="lab-wakeups-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"thread_wakeups: {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC, output in {out}", flush=True)
    vllm, lab = vllm_server(args, out), lab_llm_server(args, out)
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    results: list[BlockResult] = []
    try:
        start(vllm, args.startup_timeout, args.warmup, args.max_tokens)
        start(lab, args.startup_timeout, args.warmup, args.max_tokens)
        targets = find_targets(vllm, lab)
        for target in targets:
            print(f"   {target.server.name}: pid {target.pid}, loop thread {target.tid}", flush=True)
        idle = measure_idle(targets, args.idle_seconds, out, args)
        print(f"   idle, per second: {json.dumps(idle, indent=1)}", flush=True)
        print(f"   blocks start {datetime.now(UTC):%H:%M:%S} UTC", flush=True)
        for block in range(args.blocks):
            for mode in args.modes:
                for target in targets if block % 2 == 0 else reversed(targets):
                    result = measure_block(target, mode, block, args, out, ticks_per_s)
                    results.append(result)
                    print(
                        f"   block {block} {mode:6} {target.server.name:8} {result.requests / result.seconds:5.1f} "
                        f"req/s  loop {result.loop.get('cpu_ms', 0):5.2f} ms/req  "
                        f"syscalls {result.syscalls.get('raw_syscalls:sys_enter', 0):6.1f}/req",
                        flush=True,
                    )
        print(f"   blocks end {datetime.now(UTC):%H:%M:%S} UTC", flush=True)
        if args.profile:
            for mode in args.modes:
                for target in targets:
                    profile_block(target, mode, args, out)
                    for tid, thread in target.names.items():
                        if thread in args.profile_thread and tid != target.tid:
                            profile_block(target, mode, args, out, tid)
    finally:
        lab.stop()
        vllm.stop()
    names = [t.server.name for t in targets]
    print_summary(results, names, args.modes)
    (out / "thread_wakeups.json").write_text(
        json.dumps({"idle_per_second": idle, "blocks": [asdict(r) for r in results]}, indent=1) + "\n"
    )
    print(f"\nwrote {out / 'thread_wakeups.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
