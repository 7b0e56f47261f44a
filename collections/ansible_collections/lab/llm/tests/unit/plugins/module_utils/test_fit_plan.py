"""module_utils/fit_plan.py with the installed lab-llm planner: the version gate before any planning, options as
Ansible passes them (unset suboptions as None), and the errors the module reports."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.lab.llm.plugins.module_utils import fit_plan
from ansible_collections.lab.llm.plugins.module_utils.fit_plan import (
    FitPlanError,
    FitPlanRunner,
    version_tuple,
    without_none,
)
from tests.unit.serve.plan.plan_inputs import model_path, reference_lab_vars

UNSET_LIMITS = dict.fromkeys(
    (
        "gpu_memory_utilization",
        "cpu_offload_gib",
        "allow_tp_over_network",
        "max_num_seqs",
        "max_num_batched_tokens",
        "enforce_eager",
    )
)


def params(**model: Any) -> dict[str, Any]:
    """The options as AnsibleModule hands them over: every option present, unset ones None."""
    variables = reference_lab_vars()
    return {
        "model": {**variables["lab_llm_model"], "revision": None, "config_path": None, **model},
        "inventory": variables["lab_llm_gpu_inventory"],
        "limits": dict(UNSET_LIMITS),
        "discovered_gpus": [],
    }


def test_the_choices_are_the_planners_vocabulary() -> None:
    from lab_llm.plan import model

    assert (fit_plan.WEIGHT_DTYPES, fit_plan.KV_CACHE_DTYPES) == (model.WEIGHT_DTYPES, model.KV_CACHE_DTYPES)


def test_versions_compare_by_their_release() -> None:
    assert version_tuple("0.2.0rc1+g1") == (0, 2, 0)
    assert version_tuple("0.1.0") < version_tuple("0.1.1") < version_tuple("0.10")
    assert version_tuple(None) < version_tuple("0.1.0")


def test_unset_suboptions_are_left_out_at_every_depth() -> None:
    assert without_none({"a": None, "b": [{"c": None, "d": 1}], "e": {"f": None}}) == {"b": [{"d": 1}], "e": {}}


def test_a_too_old_lab_llm_is_refused_before_planning(monkeypatch: pytest.MonkeyPatch) -> None:
    planned: list[Any] = []
    monkeypatch.setattr(fit_plan, "plan_from_spec", lambda *args, **kwargs: planned.append(args))
    monkeypatch.setattr(fit_plan, "LAB_LLM_VERSION", "0.1.0rc1")
    monkeypatch.setattr(fit_plan, "LAB_LLM_MIN_VERSION", "0.1.1")
    with pytest.raises(
        FitPlanError, match=r"^lab\.llm\.llm_fit_plan needs lab-llm >= 0\.1\.1 .*0\.1\.0rc1 is installed"
    ):
        FitPlanRunner(params()).run()
    assert planned == []


def test_an_old_lab_llm_without_the_planners_modules_is_told_to_upgrade(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fit_plan, "LAB_LLM_VERSION", "0.0.9")
    monkeypatch.setattr(fit_plan, "PLANNER_IMPORT_ERROR", "No module named 'lab_llm.plan.spec'")
    with pytest.raises(FitPlanError, match=r"needs lab-llm >= .* 0\.0\.9 is installed there: upgrade it"):
        FitPlanRunner(params()).run()


def test_a_planner_that_does_not_import_is_named_not_called_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fit_plan, "PLANNER_IMPORT_ERROR", "cannot import name 'plan_from_spec'")
    with pytest.raises(FitPlanError, match=r"lab-llm .* is installed .* its planner does not import \(cannot import"):
        FitPlanRunner(params()).run()


def test_unset_limits_take_the_planners_defaults_and_a_second_run_plans_the_same() -> None:
    from lab_llm.plan import Limits

    first = FitPlanRunner(params()).run()
    assert first["changed"] is False
    assert first["plan"]["engine_config"]["max_num_seqs"] == Limits().max_num_seqs
    assert first["ansible_facts"] == {"lab_llm_fit_plan": first["plan"]}
    assert first["vllm_serve"]
    assert FitPlanRunner(params()).run() == first


def test_bad_input_and_a_model_that_does_not_fit_are_fit_plan_errors() -> None:
    bad = params()
    bad["model"]["config"] = {**bad["model"]["config"], "vocab_size": None}
    with pytest.raises(FitPlanError) as error:
        FitPlanRunner(bad).run()
    assert str(error.value) == "lab.llm.llm_fit_plan: bad input: model config is missing required field(s): vocab_size"
    assert error.value.details == {}

    too_big = params(config=None, config_path=str(model_path("mixtral-8x7b")), weights="bf16", context_length=32768)
    with pytest.raises(FitPlanError) as error:
        FitPlanRunner(too_big).run()
    assert str(error.value).startswith("The model does not fit on these GPUs")
    assert sorted(error.value.details) == ["reasons", "suggestions"]
    assert error.value.details["suggestions"][0]["change"] == "weights_4bit"
