"""AppConfig to ray.serve.llm's LLMConfig: engine arguments, placement and queue bounds."""

from __future__ import annotations

from lab_llm.app.builder import build_app, to_llm_config
from lab_llm.config import parse_config

AUTH = {"store_path": "/a", "signing_keys_path": "/b"}


def test_engine_settings_become_vllm_arguments_and_placement() -> None:
    config = parse_config(
        {
            "engine": {
                "model": "/models/m",
                "served_model_name": "m",
                "pipeline_parallel_size": 2,
                "quantization": "awq",
                "max_model_len": 512,
                "env": {"VLLM_PP_LAYER_PARTITION": "10,22"},
            },
            "serving": {"accelerator": "gpu", "cpus_per_worker": 2, "max_queued_requests": 7},
            "auth": AUTH,
        }
    )
    llm = to_llm_config(config)
    assert llm.engine_kwargs == {
        "tensor_parallel_size": 1,
        "pipeline_parallel_size": 2,
        "gpu_memory_utilization": 0.9,
        "cpu_offload_gb": 0.0,
        "max_model_len": 512,
        "dtype": "auto",
        "quantization": "awq",
        "kv_cache_dtype": "auto",
        "enforce_eager": False,
    }
    assert llm.placement_group_config["bundles"] == [{"CPU": 2, "GPU": 1}, {"CPU": 2, "GPU": 1}]
    assert llm.runtime_env == {"env_vars": {"VLLM_PP_LAYER_PARTITION": "10,22"}}
    assert llm.deployment_config["max_queued_requests"] == 7
    assert llm.model_id == "m"


def test_the_ingress_can_run_once_per_worker_node() -> None:
    """Ray Serve runs its proxy only on nodes with a replica; one ingress replica per worker node, and none on a head
    that advertises no CPUs, gives every RayService worker the proxy KubeRay's readiness probe checks."""
    serving = {"ingress": {"num_replicas": 3, "max_replicas_per_node": 1, "num_cpus": 0.1}}
    ingress = build_app({"engine": {"model": "/m"}, "serving": serving, "auth": AUTH})._bound_deployment
    assert (ingress.name, ingress.num_replicas, ingress.ray_actor_options) == ("LabLLMIngress", 3, {"num_cpus": 0.1})
    assert ingress._replica_config.max_replicas_per_node == 1
    default = build_app({"engine": {"model": "/m"}, "auth": AUTH})._bound_deployment
    assert (default.num_replicas, default.ray_actor_options) == (1, {"num_cpus": 0.0})
    assert default._replica_config.max_replicas_per_node is None


def test_tool_calling_and_reasoning_options_reach_vllms_frontend_and_engine_arguments() -> None:
    """Ray splits `engine_kwargs` into vLLM's FrontendArgs and AsyncEngineArgs by field name; each option must land
    in one of them (Ray refuses unknown names), where vLLM's OpenAI serving reads it."""
    from ray.llm._internal.serve.engines.vllm.vllm_models import VLLMEngineConfig

    engine = {
        "model": "/models/m",
        "enable_auto_tool_choice": True,
        "tool_call_parser": "hermes",
        "tool_strict_level": "parameter",
        "reasoning_parser": "deepseek_r1",
        "chat_template": "{{ messages[0]['content'] }}",
    }
    llm = to_llm_config(parse_config({"engine": engine, "serving": {"accelerator": "cpu"}, "auth": AUTH}))
    vllm_config = VLLMEngineConfig.from_llm_config(llm)
    assert vllm_config.frontend_kwargs == {
        "enable_auto_tool_choice": True,
        "tool_call_parser": "hermes",
        "tool_strict_level": "parameter",
        "chat_template": "{{ messages[0]['content'] }}",
    }
    assert vllm_config.engine_kwargs["reasoning_parser"] == "deepseek_r1"


def test_overload_is_refused_by_the_engines_queue_where_the_ingress_answers_it() -> None:
    """The ingress never queues (Serve's proxy would answer 503 as plain text) and takes every request the engine
    deployment may run or queue, so the engine handle's BackPressureError reaches the ingress as JSON + Retry-After."""
    serving = {"num_replicas": 2, "max_ongoing_requests": 16, "max_queued_requests": 64}
    ingress = build_app({"engine": {"model": "/m"}, "serving": serving, "auth": AUTH})._bound_deployment
    assert ingress.max_queued_requests == -1
    assert ingress.max_ongoing_requests >= 2 * 16 + 64
