"""Sharded layouts through the app: bundles, strategy, executor backend and CPU binding per accelerator; layouts
the platform cannot run refused before anything starts; the mixed-card fit plans placed stage by stage."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from ray.llm._internal.serve.engines.vllm.vllm_models import VLLMEngineConfig

from lab_llm.app.builder import check_model_layout, to_llm_config
from lab_llm.app.placement import CpuThreadBinding, omp_threads_bind
from lab_llm.config import ConfigError, EngineConfig, model_layout_problems, parse_config
from tests.conftest import REPO_ROOT
from tests.unit.serve.plan.plan_inputs import MIXED_CARD_PARTITIONS, mixed_card_plan

AUTH = {"store_path": "/a", "signing_keys_path": "/b"}
TINY_CONFIG = REPO_ROOT / "tests" / "fixtures" / "models" / "tiny-llama.json"


def app(engine: dict[str, Any], **serving: Any) -> dict[str, Any]:
    return {"engine": {"model": "/models/m", **engine}, "serving": serving, "auth": AUTH}


def executor_backend(config: dict[str, Any]) -> str:
    """What ray.serve.llm hands vLLM as distributed_executor_backend for this app config."""
    llm = to_llm_config(parse_config(config))
    return VLLMEngineConfig.from_llm_config(llm).get_initialization_kwargs()["distributed_executor_backend"]


# ------------------------------------------------------------------------------------------- CPU binding


@pytest.mark.parametrize(
    ("cores", "ranks", "binding"),
    [
        ([0, 1], 2, "0|1"),
        ([0, 1], 1, "0,1"),
        ([3, 2, 1, 0], 2, "0,1|2,3"),
        ([0, 1, 2], 2, "0|1"),  # the odd core stays free for the engine's scheduler process
        ([4, 5, 6, 7], 4, "4|5|6|7"),
        ([0, 1], 4, "0|1|0|1"),  # TP=2 x PP=2 on 2 cores: ranks share cores
    ],
)
def test_each_cpu_rank_gets_its_own_share_of_the_allowed_cores(cores: list[int], ranks: int, binding: str) -> None:
    assert omp_threads_bind(cores, ranks) == binding


def test_binding_without_cores_or_ranks_is_an_error() -> None:
    with pytest.raises(ValueError, match="no CPU cores"):
        omp_threads_bind([], 2)
    with pytest.raises(ValueError, match="ranks must be >= 1"):
        omp_threads_bind([0], 0)


# ------------------------------------------------------------------------------------------- layouts on CPU


@pytest.mark.parametrize(("tp", "pp"), [(2, 1), (1, 2), (2, 2)])
def test_a_cpu_layout_packs_its_ranks_on_one_node_with_the_mp_backend_and_derived_binding(tp: int, pp: int) -> None:
    config = app({"tensor_parallel_size": tp, "pipeline_parallel_size": pp}, accelerator="cpu", cpus_per_worker=1)
    llm = to_llm_config(parse_config(config))
    assert llm.placement_group_config == {"bundles": [{"CPU": 1.0}] * (tp * pp), "strategy": "STRICT_PACK"}
    assert llm.callback_config.callback_class is CpuThreadBinding
    assert executor_backend(config) == "mp"


def test_one_cpu_rank_keeps_vllms_own_binding() -> None:
    llm = to_llm_config(parse_config(app({}, accelerator="cpu")))
    assert llm.callback_config.callback_class is not CpuThreadBinding


def test_the_binding_callback_sets_the_variable_the_rank_processes_inherit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3})
    llm = to_llm_config(parse_config(app({"tensor_parallel_size": 2}, accelerator="cpu")))
    # What ray.serve.llm builds from callback_config in the replica (LLMConfig.get_or_create_callback), minus its
    # placement-group lookup, which needs a running Ray.
    callback = llm.callback_config.callback_class(llm_config=llm, **llm.callback_config.callback_kwargs)
    assert isinstance(callback, CpuThreadBinding)
    asyncio.run(callback.run_callback("on_before_node_init"))
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "0,1|2,3"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            app({"pipeline_parallel_size": 2, "enforce_eager": True}, accelerator="cpu"),
            "engine.enforce_eager: vLLM's CPU build crashes on the first step of a pipeline-parallel engine",
        ),
        (
            app(
                {"pipeline_parallel_size": 2},
                accelerator="cpu",
                placement_bundles=[{"CPU": 1, "a": 1}, {"CPU": 1, "b": 1}],
            ),
            r"serving.placement_bundles name several node classes \(a, b\): on CPU every rank runs on one node",
        ),
        (
            app({"tensor_parallel_size": 2}, accelerator="cpu", placement_bundles=[{"CPU": 1, "GPU": 1}] * 2),
            "a bundle asks for GPU but serving.accelerator is cpu",
        ),
        (
            app({"tensor_parallel_size": 2, "pipeline_parallel_size": 2}, placement_bundles=[{"CPU": 1, "GPU": 1}] * 3),
            r"has 3 bundles but the engine has tensor_parallel_size x pipeline_parallel_size = 2 x 2 = 4 ranks",
        ),
        (
            app({"tensor_parallel_size": 2}, placement_bundles=[{"CPU": 1, "GPU": 1}, {"CPU": 1, "GPU": 0.5}]),
            r"serving.placement_bundles\[1\]: needs GPU: 1",
        ),
        (app({}, placement_bundles=[{}]), r"placement_bundles\[0\] is empty"),
    ],
)
def test_a_layout_the_platform_cannot_run_is_refused_naming_the_setting(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(config)


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("CUDA_VISIBLE_DEVICES", "Ray assigns each rank its GPU"),
        ("VLLM_HOST_IP", "ray_node_ip_address"),
        ("NCCL_SOCKET_IFNAME", "from the node's cluster address"),
        ("GLOO_SOCKET_IFNAME", "from the node's cluster address"),
        ("VLLM_CPU_OMP_THREADS_BIND", "derives it per rank"),
    ],
)
def test_per_node_variables_are_refused_in_the_engine_env_saying_where_they_belong(name: str, where: str) -> None:
    with pytest.raises(ConfigError, match=f"engine.env: .*{name}.*differs per node.*{where}"):
        parse_config(app({"env": {name: "x"}}))


# ------------------------------------------------------------------------------------------- the model's shape


@pytest.mark.parametrize(
    ("engine", "problem"),
    [
        ({"tensor_parallel_size": 3}, "engine.tensor_parallel_size: TP=3 does not divide the 4 attention heads"),
        ({"tensor_parallel_size": 8}, "engine.tensor_parallel_size: TP=8 does not divide the 4 attention heads"),
        ({"pipeline_parallel_size": 5}, "engine.pipeline_parallel_size: 5 stages but the model has only 4 layers"),
        (
            {"pipeline_parallel_size": 2, "env": {"VLLM_PP_LAYER_PARTITION": "2,3"}},
            "engine.env.VLLM_PP_LAYER_PARTITION='2,3' adds up to 5 layers but the model has 4",
        ),
    ],
)
def test_a_layout_the_model_cannot_be_split_into_is_named(engine: dict[str, Any], problem: str) -> None:
    problems = model_layout_problems(EngineConfig(model="m", **engine), TINY_CONFIG)
    assert problems == [problem]


def test_layouts_that_split_the_model_pass() -> None:
    for engine in ({"tensor_parallel_size": 2}, {"tensor_parallel_size": 4}, {"pipeline_parallel_size": 4}):
        assert model_layout_problems(EngineConfig(model="m", **engine), TINY_CONFIG) == []
    split = EngineConfig(model="m", pipeline_parallel_size=2, env={"VLLM_PP_LAYER_PARTITION": "1,3"})
    assert model_layout_problems(split, json.loads(TINY_CONFIG.read_text())) == []


def test_the_app_refuses_a_layout_its_local_model_cannot_take(tmp_path: Path) -> None:
    shutil.copy(TINY_CONFIG, tmp_path / "config.json")
    config = parse_config(
        {**app({"tensor_parallel_size": 3}), "engine": {"model": str(tmp_path), "tensor_parallel_size": 3}}
    )
    with pytest.raises(ConfigError, match="TP=3 does not divide the 4 attention heads"):
        check_model_layout(config)


# ------------------------------------------------------------------------------------------- mixed-card plans


def plan_config(plan: Any) -> dict[str, Any]:
    """The app config the RayService and llm_app roles make from a fit plan."""
    return {
        "engine": plan.engine_config,
        "serving": {"accelerator": "gpu", "placement_bundles": [dict(b) for b in plan.ray_placement_bundles]},
        "auth": AUTH,
    }


@pytest.mark.parametrize("name", sorted(MIXED_CARD_PARTITIONS))
def test_every_stage_of_a_mixed_card_plan_asks_ray_for_the_card_it_was_sized_for(name: str) -> None:
    plan, partition = mixed_card_plan(name), MIXED_CARD_PARTITIONS[name]
    assert (plan.tensor_parallel_size, plan.pipeline_parallel_size, plan.layer_partition) == (1, 4, partition)
    llm = to_llm_config(parse_config(plan_config(plan)))
    bundles = llm.placement_group_config["bundles"]
    # Rank i runs stage i; its bundle names the class of the card the planner gave stage i.
    assert [next(k for k in bundle if k not in ("CPU", "GPU")) for bundle in bundles] == [
        stage.gpus[0].gpu_class for stage in plan.stages
    ]
    assert bundles[0] == {"CPU": 1.0, "GPU": 1.0, "rtx-3060": 1.0}
    assert all(bundle["GPU"] == 1 for bundle in bundles)
    assert llm.placement_group_config["strategy"] == "PACK"
    assert llm.runtime_env["env_vars"] == {
        "VLLM_PP_LAYER_PARTITION": ",".join(str(n) for n in partition),
        "VLLM_RAY_BUNDLE_INDICES": "0,1,2,3",
    }
    assert executor_backend(plan_config(plan)) == "ray"
    # ray.serve.llm puts the engine replica into bundle 0, beside the 3060's stage, and keeps the class resource.
    engine_config = VLLMEngineConfig.from_llm_config(llm)
    assert [b.get("rtx-3060", 0) for b in engine_config.placement_bundles] == [1.0, 0, 0, 0]
