"""Two servers side by side, alternating closed-loop blocks: throughput, CPU per process and the engine's batching.

`serve_overhead.py` measures one server after the other, so on a shared machine each sees different neighbours. This
script starts two servers with the same engine settings at once (built by `serve_overhead.py`'s own starters: `vllm`
is `vllm serve`, `lab-llm` is `lab-llm serve` with an API key, `lab-llm@DIR` is the same with the lab_llm package
from DIR/serve first on PYTHONPATH, e.g. a `git worktree` of an older commit) and gives them alternating blocks of
the same load (non-streaming chat completions of exactly `--max-tokens` tokens at `--concurrency`; the order flips
each block), so that the machine's noise falls on both alike. Per block and server it records:

- throughput and client latency (p50, mean);
- CPU per request of each process role (HAProxy, its manager, the fallback proxy, the engine's replica or vLLM's API
  server, engine core, engine workers), and the time their threads spent runnable but waiting for a core, from
  `/proc/<pid>/task/*/schedstat` (nanoseconds, every thread);
- the engine's batching, from vLLM's own Prometheus metrics read at the block's start and end (vLLM's /metrics;
  the gate's /metrics for lab-llm, which serves the same registry): engine steps per request
  (`vllm:iteration_tokens_total` count), mean generated tokens per step (`vllm:generation_tokens`, i.e. the mean
  decode batch), the engine's own mean time per request (`vllm:e2e_request_latency_seconds`, from the request's
  arrival in the engine to its end) and in its queue (`vllm:request_queue_time_seconds`); and the mean of the
  `vllm:num_requests_running` / `vllm:num_requests_waiting` gauges sampled every `--sample-interval` seconds;
- for a Ray stack, HAProxy's sessions and queue for the engine's replica (`show stat` on HAProxy's admin socket,
  sampled as above: `scur`, `qcur` of the replica's server row) and the requests it sent to the fallback proxy.

Client latency minus the engine's time per request is the time a request spends in front of the engine (HTTP,
gate, tokenisation, detokenisation, waiting for the front's event loop).

Usage (from the repository root, so that `bench` is importable): `.venv/bin/python -m bench.paired_blocks
[--servers vllm,lab-llm] [--blocks 8] [--requests 128] [--concurrency 32] [--json OUT]`. It prints one line per
block and server, then the medians and the median of the per-block ratios (second server over first).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import itertools
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.serve_overhead import (
    FRONT_ROLES,
    CpuProbe,
    Server,
    add_server_arguments,
    lab_llm_server,
    percentile,
    run_load,
    vllm_server,
)
from bench.thread_wakeups import ThreadCounters, read_threads

# vLLM metric samples the batching figures are computed from (sample names as exposed, summed over their labels).
STEPS = "vllm:iteration_tokens_total_count"
GENERATED = "vllm:generation_tokens_total"
E2E_SUM, E2E_COUNT = "vllm:e2e_request_latency_seconds_sum", "vllm:e2e_request_latency_seconds_count"
QUEUE_SUM, QUEUE_COUNT = "vllm:request_queue_time_seconds_sum", "vllm:request_queue_time_seconds_count"
RUNNING, WAITING = "vllm:num_requests_running", "vllm:num_requests_waiting"


# Pure helpers (unit-tested in tests/unit/bench) -------------------------------------------------------------------
def prometheus_samples(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {sample name: value summed over its label sets}; histogram buckets and
    `_created` samples are left out. Parsed by prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith(("_bucket", "_created")):
                continue
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def engine_batching(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    """The engine's batching over one block from vLLM's counters at its start and end: engine steps per request,
    mean tokens generated per step (the mean decode batch), mean engine time per request and mean queue time (ms).
    A figure whose counters are missing or did not move is NaN."""

    def delta(name: str) -> float:
        return after[name] - before[name] if name in after and name in before else math.nan

    def ratio(numerator: float, denominator: float, scale: float = 1.0) -> float:
        return numerator * scale / denominator if denominator and not math.isnan(denominator) else math.nan

    steps = delta(STEPS)
    return {
        "steps_per_request": ratio(steps, requests),
        "tokens_per_step": ratio(delta(GENERATED), steps),
        "engine_ms": ratio(delta(E2E_SUM), delta(E2E_COUNT), 1000.0),
        "queue_ms": ratio(delta(QUEUE_SUM), delta(QUEUE_COUNT), 1000.0),
    }


def haproxy_socket_of(config_text: str) -> str | None:
    """The admin socket path of an HAProxy configuration (`stats socket PATH ...` in `global`), if any."""
    match = re.search(r"^\s*stats socket (\S+)", config_text, re.MULTILINE)
    return match.group(1) if match else None


def haproxy_rows(show_stat: str) -> list[dict[str, str]]:
    """HAProxy's `show stat` CSV (first line `# pxname,svname,...`) as one dict per proxy or server row."""
    lines = show_stat.strip().splitlines()
    if not lines or not lines[0].startswith("# "):
        raise ValueError(f"not HAProxy `show stat` output: {show_stat[:80]!r}")
    header = lines[0][2:]
    return [dict(row) for row in csv.DictReader(io.StringIO("\n".join([header, *lines[1:]])))]


def replica_rows(rows: Sequence[dict[str, str]]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(active server rows, backup server rows) of the backends that hold servers: the replicas Serve registered
    and the fallback proxy (`bck` 1). Frontends, backend totals and HAProxy's own `stats` listener are left out."""
    servers = [row for row in rows if row.get("svname") not in ("FRONTEND", "BACKEND") and row.get("pxname") != "stats"]
    return [row for row in servers if row.get("bck") != "1"], [row for row in servers if row.get("bck") == "1"]


def median_or_nan(values: Sequence[float]) -> float:
    finite = [value for value in values if not math.isnan(value)]
    return statistics.median(finite) if finite else math.nan


# Processes -------------------------------------------------------------------------------------------------------
def thread_schedstat(pids: Sequence[int]) -> tuple[int, int]:
    """On-CPU and waiting nanoseconds of every thread of these processes (threads that ended are not counted)."""
    total = sum((counters for pid in pids for counters in read_threads(pid).values()), ThreadCounters())
    return total.run_ns, total.wait_ns


def haproxy_socket_path(pids: Sequence[int]) -> str | None:
    """The admin socket of the HAProxy among these processes, from its configuration file (`-f FILE`)."""
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        for flag, value in itertools.pairwise(argv):
            if flag == b"-f" and Path(value.decode()).is_file():
                found = haproxy_socket_of(Path(value.decode()).read_text())
                if found:
                    return found
    return None


async def haproxy_show_stat(socket_path: str) -> list[dict[str, str]]:
    reader, writer = await asyncio.open_unix_connection(socket_path)
    try:
        writer.write(b"show stat\n")
        await writer.drain()
        return haproxy_rows((await reader.read()).decode())
    finally:
        writer.close()


# One server in the pair ------------------------------------------------------------------------------------------
@dataclass
class Contender:
    """A started server with its probe, metrics URL and, for a Ray stack, HAProxy's admin socket."""

    label: str
    server: Server
    probe: CpuProbe
    haproxy_socket: str | None = None


@dataclass
class BlockResult:
    block: int
    label: str
    position: int
    requests: int
    errors: int
    req_per_s: float
    p50_ms: float
    mean_ms: float
    cpu_ms_per_request: dict[str, float]
    wait_ms_per_request: dict[str, float]
    batching: dict[str, float]
    running_mean: float
    waiting_mean: float
    haproxy_scur_mean: float = math.nan
    haproxy_scur_max: float = math.nan
    haproxy_qcur_max: float = math.nan
    fallback_requests: float = math.nan
    haproxy_rtime_ms: float = math.nan
    haproxy_ttime_ms: float = math.nan
    haproxy_qtime_ms: float = math.nan
    samples: int = 0
    front_ms: float = field(default=math.nan)


async def scrape(client: Any) -> dict[str, float]:
    """vLLM's metric samples from the server's /metrics (`client`: an httpx.AsyncClient on the server's base URL)."""
    response = await client.get("/metrics")
    response.raise_for_status()
    return prometheus_samples(response.text)


async def sample_during(contender: Contender, interval_s: float, stop: asyncio.Event) -> dict[str, list[float]]:
    """Gauges of the engine and HAProxy's replica rows every `interval_s` until `stop` is set."""
    import httpx

    series: dict[str, list[float]] = {"running": [], "waiting": [], "scur": [], "qcur": []}
    server = contender.server
    async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=30.0) as client:
        while not stop.is_set():
            series_sample = await scrape(client)
            series["running"].append(series_sample.get(RUNNING, math.nan))
            series["waiting"].append(series_sample.get(WAITING, math.nan))
            if contender.haproxy_socket:
                active, _backup = replica_rows(await haproxy_show_stat(contender.haproxy_socket))
                series["scur"].append(sum(float(row["scur"] or 0) for row in active))
                series["qcur"].append(sum(float(row["qcur"] or 0) for row in active))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
    return series


async def haproxy_counters(contender: Contender) -> dict[str, float]:
    """Requests HAProxy sent to the fallback proxy so far (`stot` of the backup rows), and the replica row's averages
    over its last 1024 requests (ms): time queued in HAProxy (`qtime`), to connect (`ctime`), to the response's
    headers (`rtime`), and the whole session seen by HAProxy (`ttime`). NaN without HAProxy."""
    if not contender.haproxy_socket:
        return dict.fromkeys(("fallback", "qtime", "ctime", "rtime", "ttime"), math.nan)
    active, backup = replica_rows(await haproxy_show_stat(contender.haproxy_socket))
    counters = {"fallback": sum(float(row["stot"] or 0) for row in backup)}
    for name in ("qtime", "ctime", "rtime", "ttime"):
        counters[name] = statistics.fmean(float(row[name] or 0) for row in active) if active else math.nan
    return counters


def role_schedstat(contender: Contender) -> dict[str, tuple[int, int]]:
    """On-CPU and waiting ns per role, plus `client`: this process, the load generator (its CPU share on a small
    machine bounds how fast a closed loop can send)."""
    found = {role: thread_schedstat(pids) for role, pids in contender.probe.pids_by_role.items()}
    found["client"] = thread_schedstat([os.getpid()])
    return found


async def run_block(contender: Contender, args: argparse.Namespace, block: int, position: int) -> BlockResult:
    server = contender.server
    import httpx

    async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=30.0) as client:
        metrics_before = await scrape(client)
    haproxy_before = await haproxy_counters(contender)
    sched_before = role_schedstat(contender)
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_during(contender, args.sample_interval, stop))
    latencies, errors, duration, _tokens, samples = await run_load(
        server.base_url, server.headers, args.requests, args.concurrency, args.max_tokens
    )
    stop.set()
    series = await sampler
    sched_after = role_schedstat(contender)
    async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers, timeout=30.0) as client:
        metrics_after = await scrape(client)
    haproxy_after = await haproxy_counters(contender)
    for sample in samples:
        print(f"     {contender.label} error: {sample}", flush=True)
    done = len(latencies)
    cpu = {role: (sched_after[role][0] - sched_before[role][0]) / 1e6 / done for role in sched_after}
    wait = {role: (sched_after[role][1] - sched_before[role][1]) / 1e6 / done for role in sched_after}
    cpu["front"] = sum(cpu.get(role, 0.0) for role in FRONT_ROLES if role != "client")
    latencies_ms = [latency * 1000 for latency in latencies]
    mean_ms = statistics.fmean(latencies_ms) if latencies_ms else math.nan
    batching = engine_batching(metrics_before, metrics_after, done)
    return BlockResult(
        block=block,
        label=contender.label,
        position=position,
        requests=done + errors,
        errors=errors,
        req_per_s=done / duration if duration > 0 else 0.0,
        p50_ms=percentile(latencies_ms, 50) if latencies_ms else math.nan,
        mean_ms=mean_ms,
        cpu_ms_per_request=cpu,
        wait_ms_per_request=wait,
        batching=batching,
        running_mean=statistics.fmean(series["running"]) if series["running"] else math.nan,
        waiting_mean=statistics.fmean(series["waiting"]) if series["waiting"] else math.nan,
        haproxy_scur_mean=statistics.fmean(series["scur"]) if series["scur"] else math.nan,
        haproxy_scur_max=max(series["scur"]) if series["scur"] else math.nan,
        haproxy_qcur_max=max(series["qcur"]) if series["qcur"] else math.nan,
        fallback_requests=haproxy_after["fallback"] - haproxy_before["fallback"],
        haproxy_rtime_ms=haproxy_after["rtime"],
        haproxy_ttime_ms=haproxy_after["ttime"],
        haproxy_qtime_ms=haproxy_after["qtime"],
        samples=len(series["running"]),
        front_ms=mean_ms - batching["engine_ms"],
    )


# Servers ---------------------------------------------------------------------------------------------------------
def build(label: str, args: argparse.Namespace, workdir: Path, port: int) -> Server:
    """`vllm`, `lab-llm` or `lab-llm@DIR` (DIR/serve first on PYTHONPATH), each in a work directory of its own."""
    # Short directory names: Ray's socket paths under it must stay within AF_UNIX's 107 bytes.
    own = workdir / f"s{port}"
    own.mkdir()
    settings = argparse.Namespace(**{**vars(args), "vllm_port": port, "app_port": port})
    if label == "vllm":
        server = vllm_server(settings, own)
    elif label == "lab-llm" or label.startswith("lab-llm@"):
        server = lab_llm_server(settings, own)
        source = label.partition("@")[2]
        if source:
            serve_dir = Path(source).resolve() / "serve"
            if not (serve_dir / "lab_llm" / "__init__.py").is_file():
                raise SystemExit(f"error: {serve_dir} holds no lab_llm package")
            path = os.pathsep.join(filter(None, [str(serve_dir), server.env.get("PYTHONPATH", "")]))
            server.env = {**server.env, "PYTHONPATH": path}
    else:
        raise SystemExit(f"error: unknown server {label!r} (vllm, lab-llm, lab-llm@DIR)")
    server.name = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-")
    return server


def start_all(labels: Sequence[str], args: argparse.Namespace, workdir: Path) -> list[Contender]:
    servers = [build(label, args, workdir, args.base_port + i) for i, label in enumerate(labels)]
    contenders: list[Contender] = []
    try:
        for server in servers:
            print(f"== {server.name}: starting, log {server.log_path}", flush=True)
            server.start()
        for label, server in zip(labels, servers, strict=True):
            server.wait_ready(args.startup_timeout)
            asyncio.run(run_load(server.base_url, server.headers, args.warmup, 8, args.max_tokens))
            assert server.process is not None
            probe = CpuProbe(server.process.pid, server.roles, root_role=server.root_role)
            probe.discover()
            socket_path = haproxy_socket_path(probe.pids_by_role.get("haproxy", []))
            found = ", ".join(f"{role} {len(pids)}" for role, pids in probe.pids_by_role.items())
            print(f"   {label} ready: {found}; HAProxy socket {socket_path}", flush=True)
            contenders.append(Contender(label, server, probe, socket_path))
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return contenders


# Report ----------------------------------------------------------------------------------------------------------
ROLES_SHOWN = (
    "front",
    "haproxy",
    "haproxy_manager",
    "proxy",
    "llm_server",
    "api_server",
    "engine_core",
    "engine_workers",
)


def block_line(result: BlockResult) -> str:
    cpu = " ".join(
        f"{role}={result.cpu_ms_per_request[role]:.2f}" for role in ROLES_SHOWN if role in result.cpu_ms_per_request
    )
    wait = " ".join(
        f"{role}={result.wait_ms_per_request[role]:.1f}"
        for role in ("client", "llm_server", "api_server", "engine_core", "engine_workers")
        if role in result.wait_ms_per_request
    )
    batching = result.batching
    return (
        f"block {result.block} {result.label:<14} {result.req_per_s:6.2f} req/s p50 {result.p50_ms:6.0f} "
        f"mean {result.mean_ms:6.0f} ms | engine {batching['engine_ms']:6.0f} ms (queue {batching['queue_ms']:5.0f}) "
        f"front {result.front_ms:5.0f} ms | steps/req {batching['steps_per_request']:.2f} tok/step "
        f"{batching['tokens_per_step']:.1f} running {result.running_mean:.1f} waiting {result.waiting_mean:.1f} "
        f"scur {result.haproxy_scur_mean:.1f}/{result.haproxy_scur_max:.0f} qmax {result.haproxy_qcur_max:.0f} "
        f"rtime {result.haproxy_rtime_ms:.0f} ttime {result.haproxy_ttime_ms:.0f} | "
        f"CPU ms/req {cpu} | wait ms/req {wait}"
    )


def summary(results: Sequence[BlockResult], labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """Median per server of every figure, and the median of the per-block ratios of the second server to the
    first (throughput, CPU per request of each role)."""

    def figures(result: BlockResult) -> dict[str, float]:
        flat = {
            "req_per_s": result.req_per_s,
            "p50_ms": result.p50_ms,
            "mean_ms": result.mean_ms,
            "front_ms": result.front_ms,
            "running_mean": result.running_mean,
            "waiting_mean": result.waiting_mean,
            "haproxy_scur_mean": result.haproxy_scur_mean,
            "haproxy_qcur_max": result.haproxy_qcur_max,
            "fallback_requests": result.fallback_requests,
            "haproxy_rtime_ms": result.haproxy_rtime_ms,
            "haproxy_ttime_ms": result.haproxy_ttime_ms,
            **result.batching,
        }
        flat.update({f"cpu_{role}": value for role, value in result.cpu_ms_per_request.items()})
        flat.update({f"wait_{role}": value for role, value in result.wait_ms_per_request.items()})
        return flat

    by_label = {label: [figures(r) for r in results if r.label == label] for label in labels}
    medians = {
        label: {name: median_or_nan([row.get(name, math.nan) for row in rows]) for name in rows[0]}
        for label, rows in by_label.items()
        if rows
    }
    if len(labels) == 2:
        first, second = by_label[labels[0]], by_label[labels[1]]
        ratios: dict[str, float] = {}
        for name in ("req_per_s", "cpu_engine_core", "cpu_engine_workers", "steps_per_request", "tokens_per_step"):
            ratios[name] = median_or_nan(
                [b.get(name, math.nan) / a[name] for a, b in zip(first, second, strict=True) if a.get(name)]
            )
        medians[f"{labels[1]} / {labels[0]} (median of per-block ratios)"] = ratios
    return medians


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_server_arguments(parser)
    parser.add_argument("--servers", default="vllm,lab-llm", help="two of vllm, lab-llm, lab-llm@DIR (comma)")
    parser.add_argument("--blocks", type=int, default=8, help="blocks per server")
    parser.add_argument("--requests", type=int, default=128, help="requests per block")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=48)
    parser.add_argument("--sample-interval", type=float, default=0.5, help="seconds between gauge samples")
    parser.add_argument("--base-port", type=int, default=8031, help="first server's port; the next one +1")
    parser.add_argument(
        "--client-nice",
        type=int,
        default=0,
        help="nice value of the load generator's thread once the servers run (e.g. -10, as root): keeps the client "
        "from being starved by the engine's busy threads on a small machine, so the servers' own speed is compared",
    )
    parser.add_argument("--json", type=Path, help="also write every block's results to this file")
    args = parser.parse_args(argv)
    args.labels = [label for label in args.servers.split(",") if label]
    if len(args.labels) != 2 or len(set(args.labels)) != 2:
        parser.error("--servers names two different servers")
    if min(args.blocks, args.requests, args.concurrency, args.warmup) < 1:
        parser.error("--blocks, --requests, --concurrency and --warmup must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="lab-pair-"))
    print(
        f"paired_blocks: {args.labels}, {args.blocks} x {args.requests} requests at c={args.concurrency}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        flush=True,
    )
    try:
        contenders = start_all(args.labels, args, workdir)
    except (RuntimeError, subprocess.CalledProcessError) as error:
        print(f"error: {error}; logs kept in {workdir}", file=sys.stderr)
        return 1
    if args.client_nice:
        # Linux: PRIO_PROCESS with 0 sets the calling thread only; the servers started above keep their niceness.
        os.setpriority(os.PRIO_PROCESS, 0, args.client_nice)
    results: list[BlockResult] = []
    try:
        for block in range(args.blocks):
            order = contenders if block % 2 == 0 else contenders[::-1]
            for position, contender in enumerate(order):
                result = asyncio.run(run_block(contender, args, block, position))
                results.append(result)
                print(block_line(result), flush=True)
    finally:
        for contender in contenders:
            contender.server.stop()
    medians = summary(results, args.labels)
    print("\nmedians over the blocks:")
    for label, figures in medians.items():
        print(f"  {label}: " + ", ".join(f"{name} {value:.2f}" for name, value in figures.items()))
    if args.json:
        document = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "blocks": [asdict(result) for result in results],
            "medians": medians,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {args.json}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
