"""The planner is a pure library: importing it pulls in no GPU stack, no CLI framework, no web app."""

from __future__ import annotations

import subprocess
import sys


def test_planning_imports_only_stdlib_pydantic_and_yaml() -> None:
    probe = (
        "import sys, lab_llm.plan, lab_llm.plan.spec; "
        "print(sorted(m for m in ('torch', 'vllm', 'ray', 'typer', 'fastapi', 'lab_llm.config') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"
