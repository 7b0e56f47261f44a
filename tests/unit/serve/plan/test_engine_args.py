"""What a plan means to paste: the vllm serve line parsed by vLLM's own parser, the YAML the playbooks take."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
import yaml

from lab_llm.config import EngineConfig
from lab_llm.plan import FitPlan, plan_fit
from lab_llm.plan.engine_args import (
    engine_arguments,
    playbook_vars,
    playbook_vars_yaml,
    vllm_serve_argv,
    vllm_serve_command,
)
from tests.unit.serve.plan.plan_inputs import model_path, one_gpu_per_node, reference_lab_inventory

LAB_MODEL = model_path("dolphin3-r1-mistral-24b-awq")


def lab_model_pp2() -> FitPlan:
    return plan_fit(LAB_MODEL, reference_lab_inventory(), context_length=32768, concurrency=4,
                    limits={"gpu_memory_utilization": 0.97}, served_model_name="dolphin3")  # fmt: skip


def mixed_pp4() -> FitPlan:
    return plan_fit(model_path("qwen2.5-32b"), reference_lab_inventory(), weights="bf16", context_length=32768,
                    limits={"gpu_memory_utilization": 0.97, "enforce_eager": True})  # fmt: skip


def test_command_line_starts_with_the_engine_environment() -> None:
    plan = lab_model_pp2()
    command = vllm_serve_command(plan, revision="v1.0")
    assert command.startswith("VLLM_PP_LAYER_PARTITION=20,20 vllm serve ")
    words = shlex.split(command.split(" ", 1)[1])
    assert words[:3] == ["vllm", "serve", plan.engine_config["model"]]
    assert words[words.index("--served-model-name") + 1] == "dolphin3"
    assert words[words.index("--revision") + 1] == "v1.0"
    assert words[words.index("--pipeline-parallel-size") + 1] == "2"
    assert words[-2:] == ["--distributed-executor-backend", "ray"]  # the stages sit on two nodes
    assert "--no-enforce-eager" in words


def test_one_node_needs_no_ray_backend() -> None:
    plan = plan_fit(model_path("llama-3-8b"), one_gpu_per_node("rtx-3090"), context_length=8192)
    assert "--distributed-executor-backend" not in vllm_serve_argv(plan)


def test_engine_arguments_are_what_the_app_passes_to_vllm() -> None:
    builder = pytest.importorskip("lab_llm.app.builder")
    from lab_llm.config import parse_config

    for plan in (lab_model_pp2(), mixed_pp4()):
        config = parse_config({"engine": plan.engine_config, "auth": {"store_path": "/a", "signing_keys_path": "/b"}})
        assert builder.to_llm_config(config).engine_kwargs == engine_arguments(plan.engine_config)


def _parsed_by_vllm(argv: list[str]) -> Any:
    arg_utils = pytest.importorskip("vllm.engine.arg_utils")
    argparse_utils = pytest.importorskip("vllm.utils.argparse_utils")
    parser = arg_utils.AsyncEngineArgs.add_cli_args(argparse_utils.FlexibleArgumentParser())
    return parser.parse_args(["--model", *argv[2:]])  # `vllm serve MODEL` is `--model MODEL` to EngineArgs


@pytest.mark.parametrize("make_plan", [lab_model_pp2, mixed_pp4])
def test_vllm_parses_the_command_into_the_plans_engine_arguments(make_plan: Any) -> None:
    plan = make_plan()
    namespace = _parsed_by_vllm(vllm_serve_argv(plan))
    assert namespace.model == plan.engine_config["model"]
    assert namespace.served_model_name == [plan.engine_config["served_model_name"]]
    for name, value in engine_arguments(plan.engine_config).items():
        assert getattr(namespace, name) == value, name


def test_playbook_variables_are_valid_engine_configs_and_yaml() -> None:
    plan = mixed_pp4()
    variables = yaml.safe_load(playbook_vars_yaml(plan))
    assert variables == playbook_vars(plan)
    assert variables["llm_app_engine"] == variables["rayservice_engine"] == plan.engine_config
    EngineConfig.model_validate(variables["llm_app_engine"])
    assert variables["rayservice_worker_groups"] == [
        {"gpu_class": "rtx-3060", "replicas": 1, "gpus_per_worker": 1, "node_group": "gpu-rtx-3060"},
        {"gpu_class": "rtx-3090", "replicas": 3, "gpus_per_worker": 1, "node_group": "gpu-rtx-3090"},
    ]
    assert "&id" not in playbook_vars_yaml(plan)  # no YAML anchors between the two engine blocks
