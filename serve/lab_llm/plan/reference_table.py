"""The README's "Fit planner" table: popular models on the reference lab, planned by ``lab-llm plan --json``.

    python -m lab_llm.plan.reference_table tests/fixtures/models inventory/reference-lab/group_vars/all/fit_plan.yml

Each row runs the CLI command (in-process, through Typer's test runner, so its JSON is what a user gets) on
one model config from the first directory and the reference lab's GPUs (``lab_llm_gpu_inventory``) and limits
(``lab_llm_fit_limits``) from the vars file; prints a Markdown table.
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
    Case("Dolphin3.0-R1-Mistral-24B (seed)", "dolphin3-r1-mistral-24b-awq", "awq", 32768),
    Case("Dolphin3.0-R1-Mistral-24B (seed)", "dolphin3-r1-mistral-24b-awq", "awq", 32768, 4),
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


def _run(case: Case, models_dir: Path, inventory: Path) -> dict:
    app = typer.Typer()
    app.command()(plan_command)
    arguments = [
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
    result = CliRunner().invoke(app, arguments)
    if result.exit_code not in (0, 1):
        raise RuntimeError(f"lab-llm plan {' '.join(arguments)} failed: {result.output}")
    return json.loads(result.output)


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


if __name__ == "__main__":
    main()
