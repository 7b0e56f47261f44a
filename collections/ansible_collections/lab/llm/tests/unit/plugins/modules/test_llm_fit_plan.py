"""lab.llm.llm_fit_plan: the plan as facts, a clear failure when nothing fits, and without lab-llm installed."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.lab.llm.plugins.module_utils import fit_plan
from ansible_collections.lab.llm.plugins.modules import llm_fit_plan
from tests.module_runner import ModuleExit
from tests.module_runner import run_module_result as run_module_main
from tests.unit.serve.plan.plan_inputs import model_path, reference_lab_vars


def run_module(monkeypatch: pytest.MonkeyPatch, args: dict) -> ModuleExit:
    return run_module_main(monkeypatch, llm_fit_plan.main, args)


def reference_args(**model: Any) -> dict[str, Any]:
    variables = reference_lab_vars()
    return {
        "model": {**variables["lab_llm_model"], **model},
        "inventory": variables["lab_llm_gpu_inventory"],
        "limits": variables["lab_llm_fit_limits"],
    }


def test_reference_lab_plan_is_returned_and_set_as_fact(monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = run_module(monkeypatch, reference_args(concurrency=4))
    assert not outcome.failed
    result = outcome.result
    assert result["changed"] is False
    plan = result["plan"]
    assert result["ansible_facts"]["lab_llm_fit_plan"] == plan
    assert (plan["tensor_parallel_size"], plan["pipeline_parallel_size"]) == (1, 2)
    assert plan["engine_config"]["env"]["VLLM_PP_LAYER_PARTITION"] == "20,20"
    assert plan["engine_config"]["served_model_name"] == "dolphin3-r1-mistral-24b"
    assert plan["worker_groups"] == [{"gpu_class": "rtx-3090", "replicas": 2, "gpus_per_worker": 1}]


def test_check_mode_plans_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    normal = run_module(monkeypatch, reference_args())
    checked = run_module(monkeypatch, {**reference_args(), "_ansible_check_mode": True})
    assert checked.result["plan"] == normal.result["plan"]


def test_config_path_on_the_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    args = reference_args()
    args["model"] = {"name": "mistralai/Mixtral-8x7B-v0.1", "config_path": str(model_path("mixtral-8x7b"))}
    args["model"]["weights"] = "awq"
    outcome = run_module(monkeypatch, args)
    assert not outcome.failed
    assert outcome.result["plan"]["weights"] == "awq-4bit-g128"


def test_does_not_fit_fails_with_reasons_and_suggestions(monkeypatch: pytest.MonkeyPatch) -> None:
    args = reference_args()
    args["model"] = {"config_path": str(model_path("mixtral-8x7b")), "weights": "bf16", "context_length": 32768}
    outcome = run_module(monkeypatch, args)
    assert outcome.failed
    assert outcome.result["msg"].startswith("The model does not fit on these GPUs")
    assert "weights need" in outcome.result["reasons"][0]
    assert outcome.result["suggestions"][0]["change"] == "weights_4bit"


def test_bad_input_names_the_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    args = reference_args()
    args["model"]["config"] = {**args["model"]["config"], "vocab_size": None}
    outcome = run_module(monkeypatch, args)
    assert outcome.failed
    assert outcome.result["msg"] == (
        "lab.llm.llm_fit_plan: bad input: model config is missing required field(s): vocab_size"
    )


def test_zero_gpus_is_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    args = reference_args()
    args["inventory"] = {"nodes": [{"name": "empty", "gpus": []}]}
    outcome = run_module(monkeypatch, args)
    assert outcome.failed
    assert "the inventory has no GPUs" in outcome.result["msg"]


def test_config_and_config_path_are_exclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    args = reference_args()
    args["model"]["config_path"] = str(model_path("mixtral-8x7b"))
    outcome = run_module(monkeypatch, args)
    assert outcome.failed
    assert "mutually exclusive" in outcome.result["msg"]


def test_without_lab_llm_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llm_fit_plan, "LAB_LLM_IMPORT_ERROR", "Traceback: No module named 'lab_llm'")
    outcome = run_module(monkeypatch, reference_args())
    assert outcome.failed
    assert "Failed to import the required Python library (lab-llm==0.1.0)" in outcome.result["msg"]
    assert "lab.llm.llm_fit_plan" in outcome.result["msg"]


def test_discovered_gpus_make_the_inventory(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.serve.plan.test_gpus import reference_lab_facts

    args = reference_args(concurrency=4)
    by_hand = run_module(monkeypatch, args).result["plan"]
    args["discovered_gpus"] = reference_lab_facts()
    args["inventory"] = {"network": "10gbe"}
    outcome = run_module(monkeypatch, args)
    assert not outcome.failed, outcome.result
    assert outcome.result["plan"] == by_hand
    assert outcome.result["vllm_serve"].startswith("VLLM_PP_LAYER_PARTITION=20,20 vllm serve ")


def test_an_unknown_pci_id_fails_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    args = reference_args()
    args["discovered_gpus"] = [{"name": "gpu-new", "host": "pve9", "gpus": [{"path": "0000:01:00", "id": "10de:2bff"}]}]
    args["inventory"] = {}
    outcome = run_module(monkeypatch, args)
    assert outcome.failed
    assert "unknown NVIDIA GPU, PCI id 10de:2bff" in outcome.result["msg"]


def test_limits_left_out_take_the_planners_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab_llm.plan import Limits

    args = reference_args()
    args["limits"] = {}
    plan = run_module(monkeypatch, args).result["plan"]
    assert plan["engine_config"]["max_num_seqs"] == Limits().max_num_seqs
    assert plan["gpu_memory_utilization"] <= Limits().gpu_memory_utilization


def test_too_old_lab_llm_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fit_plan, "LAB_LLM_VERSION", "0.0.9")
    monkeypatch.setattr(fit_plan, "LAB_LLM_MIN_VERSION", "0.1.0")
    outcome = run_module(monkeypatch, reference_args())
    assert outcome.failed
    assert outcome.result["msg"].startswith("lab.llm.llm_fit_plan needs lab-llm >= 0.1.0")
    assert "0.0.9 is installed" in outcome.result["msg"]


def test_documented_defaults_are_the_planners() -> None:
    """The module sets no defaults of its own (the planner's Limits are the one place); the numbers its
    documentation names must be those."""
    import re

    import yaml

    from lab_llm.plan import Limits

    options = yaml.safe_load(llm_fit_plan.DOCUMENTATION)["options"]["limits"]["suboptions"]
    spec = llm_fit_plan.argument_spec()["limits"]["options"]
    for name, option in options.items():
        assert "default" not in option and "default" not in spec[name], name
        default = getattr(Limits(), name)
        description = option["description"]
        named = re.search(r"default (\d+(?:\.\d+)?)", description) or re.search(
            r"(\d+(?:\.\d+)?) \(the default\)", description
        )
        if isinstance(default, bool):
            assert ("default no" in description) is (default is False), name
        else:
            assert named, f"{name}: the description names no default"
            assert float(named.group(1)) == default, name


def test_model_by_hub_name_from_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from huggingface_hub import constants

    from tests.unit.serve.plan.hub_standin import hub_cache, model_files

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hub_cache(
        tmp_path, "cognitivecomputations/Dolphin3.0-R1-Mistral-24B-AWQ", model_files("dolphin3-r1-mistral-24b-awq")
    )
    args = reference_args(concurrency=4)
    by_config = run_module(monkeypatch, args).result["plan"]
    del args["model"]["config"]
    outcome = run_module(monkeypatch, args)
    assert not outcome.failed, outcome.result
    plan = outcome.result["plan"]
    assert plan["model_source"].startswith("hub:cognitivecomputations/Dolphin3.0-R1-Mistral-24B-AWQ@")
    assert {**plan, "model_source": ""} == by_config
    args["model"]["name"] = "cognitivecomputations/not-cached"
    missing = run_module(monkeypatch, args)
    assert missing.failed
    assert "is not in the Hugging Face cache" in missing.result["msg"]
