"""The README's reference-lab table is what the planner produces now; the CLI speaks JSON and exit codes."""

from __future__ import annotations

import json
import re

import typer
from typer.testing import CliRunner

from lab_llm.plan.cli import plan_command
from lab_llm.plan.reference_table import speed_table, table
from tests.conftest import REPO_ROOT
from tests.unit.serve.plan.plan_inputs import MODELS_DIR, REFERENCE_LAB_FIT_PLAN, model_path

TABLE = re.compile(r"<!-- fit-planner-table:start -->\n(.*?)\n<!-- fit-planner-table:end -->", re.DOTALL)
SPEED = re.compile(r"<!-- fit-planner-speed:start -->\n(.*?)\n<!-- fit-planner-speed:end -->", re.DOTALL)
REGENERATE = (
    "regenerate it with python -m lab_llm.plan.reference_table tests/fixtures/models "
    "inventory/reference-lab/group_vars/all/fit_plan.yml"
)


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(plan_command)
    return app


def test_readme_table_matches_the_planner() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    found = TABLE.search(readme)
    assert found, "README.md has no Fit planner table between the fit-planner-table markers"
    expected = table(MODELS_DIR, REFERENCE_LAB_FIT_PLAN)
    assert found.group(1).strip() == expected, "README table is stale: " + REGENERATE


def test_readme_speed_table_matches_the_planner() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    found = SPEED.search(readme)
    assert found, "README.md has no speed table between the fit-planner-speed markers"
    assert found.group(1).strip() == speed_table(MODELS_DIR), "README speed table is stale: " + REGENERATE
    assert "**about 40 tok/s**" in readme
    assert "**6.8 ms per stage boundary**" in readme


def test_cli_json_for_a_plan() -> None:
    result = CliRunner().invoke(cli(), ["-m", str(REFERENCE_LAB_FIT_PLAN), "-i", str(REFERENCE_LAB_FIT_PLAN), "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["fits"] is True
    assert answer["plan"]["engine_config"]["env"] == {"VLLM_PP_LAYER_PARTITION": "20,20"}


def test_cli_table_for_people() -> None:
    result = CliRunner().invoke(cli(), ["-m", str(model_path("llama-3-8b")), "-i", str(REFERENCE_LAB_FIT_PLAN)])
    assert result.exit_code == 0, result.output
    assert "Memory per GPU (GiB):" in result.output
    assert "gpu-3090-1/0  rtx-3090" in result.output


def test_cli_exit_codes_for_no_fit_and_bad_input() -> None:
    no_fit = CliRunner().invoke(
        cli(), ["-m", str(model_path("mixtral-8x7b")), "-i", str(REFERENCE_LAB_FIT_PLAN), "--json"]
    )
    assert no_fit.exit_code == 1
    assert json.loads(no_fit.output)["suggestions"][0]["change"] == "weights_4bit"
    bad = CliRunner().invoke(
        cli(), ["-m", str(model_path("mixtral-8x7b")), "-i", str(REFERENCE_LAB_FIT_PLAN), "--weights", "int3"]
    )
    assert bad.exit_code == 2
    assert "unknown weight dtype 'int3'" in bad.output
