"""A seeded schema fuzz (schemathesis + hypothesis) of every operation of an OpenAPI document.

schemathesis's own pytest plugin does not run on the pinned pytest, so the search is driven here through its
Python API: valid and invalid cases per operation, derandomized (the same cases every run), a small budget.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode


def fuzz(
    schema: schemathesis.BaseSchema, call: Callable[[schemathesis.Case], object], checks: list, max_examples: int
) -> list[str]:
    """Run a seeded hypothesis search over every operation of `schema`; `call(case)` sends one request. Returns the
    labels of the operations fuzzed (so a test can check it fuzzed something)."""
    fuzzed = []
    for result, mode in itertools.product(schema.get_all_operations(), GenerationMode):
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=max_examples,
            derandomize=True,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def one(case: schemathesis.Case) -> None:
            response = call(case)
            case.validate_response(response, checks=checks)

        try:
            one()
        except Unsatisfiable:
            # No invalid request exists for an operation without a body or constrained parameters (the GETs).
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue
        fuzzed.append(f"{operation.label} ({mode.value})")
    return fuzzed
