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


def test_the_package_docstring_names_the_planners_own_defaults() -> None:
    """Limits and plan_fit's signature are where the defaults live; the documentation that names them must agree."""
    import ast
    import inspect
    import re

    import lab_llm.plan
    from lab_llm.plan import Limits, plan_fit

    doc = lab_llm.plan.__doc__ or ""
    named = dict(re.findall(r"``(\w+)``[^`(]*\(([^)]+)\)", doc.split("``limits``:", 1)[1].split("\n\n", 1)[0]))
    assert set(named) == set(Limits.model_fields) - {"enforce_eager"}, named
    for field, text in named.items():
        assert ast.literal_eval(text) == Limits.model_fields[field].default, field
    signature = inspect.signature(plan_fit).parameters
    for name in ("kv_cache_dtype", "concurrency"):
        example = re.search(rf"^\s+{name}=([^,]+),", doc, re.MULTILINE)
        assert example and ast.literal_eval(example.group(1)) == signature[name].default, name
