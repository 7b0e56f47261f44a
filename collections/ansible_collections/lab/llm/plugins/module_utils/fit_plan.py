# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The flow of lab.llm.llm_fit_plan: check the installed lab-llm, hand the options to its planner, shape the result.

The planning itself is lab-llm's (``lab_llm.plan.spec.plan_from_spec``); this file only adapts the module's options
to it and its answers to the module's result.
"""

from __future__ import annotations

import traceback
from typing import Any

# The oldest lab-llm whose planner takes what this module sends (Hub ids, discovered GPUs, revision).
LAB_LLM_MIN_VERSION = "0.1.0"

# The planner's vocabulary (lab_llm.plan.model WEIGHT_DTYPES, KV_CACHE_DTYPES), here so the argument spec can offer
# them as choices where lab-llm is not installed; a unit test fails when they drift from lab-llm's.
WEIGHT_DTYPES = ("fp16", "bf16", "fp8", "awq", "gptq")
KV_CACHE_DTYPES = ("auto", "fp16", "bf16", "fp8")

# lab-llm itself first: an older lab-llm that lacks a planner module is "too old", not "missing".
LAB_LLM_IMPORT_ERROR: str | None = None
LAB_LLM_VERSION: str | None
try:
    from lab_llm import __version__ as LAB_LLM_VERSION
except ImportError:
    LAB_LLM_VERSION = None
    LAB_LLM_IMPORT_ERROR = traceback.format_exc()

PLANNER_IMPORT_ERROR: str | None = None
try:
    from lab_llm.plan import DoesNotFitError, PlanInputError
    from lab_llm.plan.engine_args import vllm_serve_command
    from lab_llm.plan.spec import plan_from_spec
except ImportError as error:
    PLANNER_IMPORT_ERROR = str(error)


class FitPlanError(Exception):
    """The plan cannot be made; ``details`` are more result fields (``reasons``, ``suggestions``) when it does not
    fit."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


def without_none(value: Any) -> Any:
    """Ansible fills unset suboptions with None; the planner applies its own defaults to keys that are absent."""
    if isinstance(value, dict):
        return dict((key, without_none(item)) for key, item in value.items() if item is not None)
    if isinstance(value, list):
        return [without_none(item) for item in value]
    return value


def version_tuple(version: object) -> tuple[int, ...]:
    """'0.1.0' -> (0, 1, 0); pre-release and local parts ('0.2.0rc1', '0.1.0+g1') count as their release."""
    parts: list[int] = []
    for part in str(version).split("+", maxsplit=1)[0].split("."):
        digits = ""
        for character in part:
            if not character.isdigit():
                break
            digits += character
        parts.append(int(digits or 0))
    return tuple(parts)


class FitPlanRunner:
    """Plans one model on the GPUs of the module's options (``model``, ``inventory``, ``discovered_gpus``,
    ``limits``). Needs lab-llm importable (LAB_LLM_IMPORT_ERROR is None); reads only, so check mode plans the same.
    """

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = without_none(params)

    def run(self) -> dict[str, Any]:
        """The module result: ``changed`` (False), ``plan`` (the FitPlan as JSON), ``vllm_serve`` (the equivalent
        ``vllm serve`` command) and ``ansible_facts.lab_llm_fit_plan`` (the plan again).

        Raises FitPlanError when the installed lab-llm is older than LAB_LLM_MIN_VERSION, on bad input (the
        planner's PlanInputError) and when the model does not fit (with its ``reasons`` and ``suggestions``).
        """
        if version_tuple(LAB_LLM_VERSION) < version_tuple(LAB_LLM_MIN_VERSION):
            raise FitPlanError(
                "lab.llm.llm_fit_plan needs lab-llm >= %s on the host that runs it; %s is installed there: "
                "upgrade it (pip install -U lab-llm)" % (LAB_LLM_MIN_VERSION, LAB_LLM_VERSION)
            )
        if PLANNER_IMPORT_ERROR is not None:
            raise FitPlanError(
                "lab.llm.llm_fit_plan: lab-llm %s is installed on the host that runs it, but its planner does not "
                "import (%s): install the lab-llm release of this collection there"
                % (LAB_LLM_VERSION, PLANNER_IMPORT_ERROR)
            )
        params = self.params
        try:
            plan = plan_from_spec(
                params["model"],
                params.get("inventory") or {},
                params.get("limits") or {},
                discovered_gpus=params.get("discovered_gpus") or [],
            )
        except PlanInputError as error:
            raise FitPlanError("lab.llm.llm_fit_plan: bad input: %s" % error) from None
        except DoesNotFitError as error:
            details = error.as_dict()
            raise FitPlanError(str(error), reasons=details["reasons"], suggestions=details["suggestions"]) from None
        result = plan.model_dump(mode="json")
        return dict(
            changed=False,
            plan=result,
            vllm_serve=vllm_serve_command(plan, params["model"].get("revision")),
            ansible_facts=dict(lab_llm_fit_plan=result),
        )
