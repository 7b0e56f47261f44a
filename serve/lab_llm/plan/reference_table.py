"""The README's "Fit planner" tables, planned by ``lab-llm plan --json``.

    python -m lab_llm.plan.reference_table tests/fixtures/models inventory/reference-lab/group_vars/all/fit_plan.yml

Each row runs the CLI command (in-process, through Typer's test runner, so its JSON is what a user gets) on
one model config from the first directory. The first table: popular models on the reference lab's GPUs
(``lab_llm_gpu_inventory``) and limits (``lab_llm_fit_limits``) from the vars file. The second: the decode
estimate against every published single-stream figure it uses (``PUBLISHED_DECODE``), with its error.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import typer
from typer.testing import CliRunner

from lab_llm.plan.cli import plan_command


@dataclass(frozen=True)
class Case:
    label: str
    config: str
    weights: str
    context: int
    concurrency: int = 1
    kv_cache_dtype: str = "auto"


CASES: tuple[Case, ...] = (
    Case("Llama-3-8B", "llama-3-8b", "bf16", 8192),
    Case("Mistral-Small-24B", "mistral-small-24b", "fp8", 32768),
    Case("Dolphin3.0-R1-Mistral-24B (reference lab)", "dolphin3-r1-mistral-24b-awq", "awq", 32768),
    Case("Dolphin3.0-R1-Mistral-24B (reference lab)", "dolphin3-r1-mistral-24b-awq", "awq", 32768, 4),
    Case("Qwen2.5-32B", "qwen2.5-32b", "awq", 32768),
    Case("Qwen2.5-32B", "qwen2.5-32b", "bf16", 32768),
    Case("DeepSeek-R1-Distill-Qwen-32B", "deepseek-r1-distill-qwen-32b", "fp8", 65536, 1, "fp8"),
    Case("Mixtral-8x7B", "mixtral-8x7b", "awq", 32768),
    Case("Mixtral-8x7B", "mixtral-8x7b", "bf16", 32768),
    Case("Qwen2.5-32B", "qwen2.5-32b", "bf16", 131072),
)

HEADER = (
    "| Model | Weights / KV | Context x users | Layout (layers per stage) | gpu_memory_utilization "
    "| KV cache tokens | Decode tok/s (est.) |\n|---|---|---|---|---|---|---|"
)


@dataclass(frozen=True)
class PublishedDecode:
    """A published single-stream vLLM decode figure, and the plan that describes its setup."""

    source: str
    setup: str
    config: str
    weights: str
    gpus: str
    """``lab-llm plan --gpus``: one card per node."""
    tokens_per_s: float
    pipeline_parallel_size: int = 1
    context: int = 4096
    concurrency: int = 1
    fitted: str = ""
    """The constant this figure was used to set, if any (its error is then small by construction)."""


PUBLISHED_DECODE: tuple[PublishedDecode, ...] = (
    PublishedDecode(
        "mlc-ai/llm-perf-bench#35",
        "Llama-2-7B AWQ, 1x RTX 3090",
        "llama-2-7b",
        "awq",
        "3090",
        175,
        fitted="BANDWIDTH_EFFICIENCY, ENGINE_OVERHEAD_MS",
    ),
    PublishedDecode(
        "nith.in/posts/workshop/what-an-llm-server-feels-like-under-load",
        "Qwen2.5-7B AWQ, 1x RTX 3060 (Proxmox passthrough, vLLM 0.11)",
        "qwen2.5-7b-awq",
        "awq",
        "3060",
        59,
    ),
    PublishedDecode(
        "nith.in/posts/workshop/what-an-llm-server-feels-like-under-load",
        "Llama-2-7B GPTQ, 1x RTX 3060 (Proxmox passthrough, vLLM 0.11)",
        "llama-2-7b",
        "gptq",
        "3060",
        79,
    ),
    PublishedDecode(
        "the reference lab's hand-tuned deployment (before lab-llm, by trial and error)",
        "Dolphin3.0-R1-Mistral-24B AWQ, TP=1 PP=2, 2x RTX 3090 in two VMs, 10GbE, Ray",
        "dolphin3-r1-mistral-24b-awq",
        "awq",
        "3090,3090",
        40,
        pipeline_parallel_size=2,
        context=32768,
        concurrency=4,
        fitted="PIPELINE_STAGE_OVERHEAD_MS",
    ),
)

SPEED_HEADER = (
    "| Published figure | Setup | Measured tok/s | Estimate tok/s | Error | Constant set from it |\n"
    "|---|---|---|---|---|---|"
)


def _invoke(arguments: list[str]) -> dict:
    app = typer.Typer()
    app.command()(plan_command)
    result = CliRunner().invoke(app, arguments)
    if result.exit_code not in (0, 1):
        raise RuntimeError(f"lab-llm plan {' '.join(arguments)} failed: {result.output}")
    return json.loads(result.output)


def estimate_for(figure: PublishedDecode, models_dir: Path) -> dict:
    """The plan of the figure's setup (``lab-llm plan --gpus ... --json``)."""
    answer = _invoke(
        [
            "--model",
            str(models_dir / f"{figure.config}.json"),
            "--gpus",
            figure.gpus,
            "--weights",
            figure.weights,
            "--context",
            str(figure.context),
            "--concurrency",
            str(figure.concurrency),
            "--json",
        ]
    )
    if not answer["fits"]:
        raise RuntimeError(f"{figure.setup}: the planner finds no layout: {answer}")
    return answer["plan"]


def speed_row(figure: PublishedDecode, models_dir: Path) -> str:
    plan = estimate_for(figure, models_dir)
    estimate = plan["decode"]["tokens_per_s"]
    error = (estimate - figure.tokens_per_s) / figure.tokens_per_s * 100
    return (
        f"| {figure.source} | {figure.setup} | {figure.tokens_per_s:g} | {estimate} | {error:+.0f} % "
        f"| {figure.fitted or '-'} |"
    )


def speed_table(models_dir: Path) -> str:
    return "\n".join([SPEED_HEADER, *(speed_row(figure, models_dir) for figure in PUBLISHED_DECODE)])


def _run(case: Case, models_dir: Path, inventory: Path) -> dict:
    return _invoke(
        [
            "--model",
            str(models_dir / f"{case.config}.json"),
            "--inventory",
            str(inventory),
            "--weights",
            case.weights,
            "--kv-cache-dtype",
            case.kv_cache_dtype,
            "--context",
            str(case.context),
            "--concurrency",
            str(case.concurrency),
            "--json",
        ]
    )


def row(case: Case, models_dir: Path, inventory: Path) -> str:
    answer = _run(case, models_dir, inventory)
    weights = f"{case.weights} / {case.kv_cache_dtype}"
    wanted = f"{case.context} x {case.concurrency}"
    if not answer["fits"]:
        suggestion = answer["suggestions"][0]["description"] if answer["suggestions"] else "nothing simple"
        return f"| {case.label} | {weights} | {wanted} | does not fit; cheapest fix: {suggestion} | | | |"
    plan = answer["plan"]
    stages = " -> ".join(
        f"{'+'.join(sorted({g['gpu_class'] for g in s['gpus']}))}[{s['layers']}]" for s in plan["stages"]
    )
    layout = f"TP={plan['tensor_parallel_size']} PP={plan['pipeline_parallel_size']}: {stages}"
    return (
        f"| {case.label} | {weights} | {wanted} | {layout} | {plan['gpu_memory_utilization']} "
        f"| {plan['kv_cache_tokens']} | {plan['decode']['tokens_per_s']} |"
    )


def table(models_dir: Path, inventory: Path) -> str:
    return "\n".join([HEADER, *(row(case, models_dir, inventory) for case in CASES)])


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: python -m lab_llm.plan.reference_table MODELS_DIR INVENTORY_VARS_YAML")
    print(table(Path(sys.argv[1]), Path(sys.argv[2])))
    print()
    print(speed_table(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
