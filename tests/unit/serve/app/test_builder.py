"""AppConfig to ray.serve.llm's LLMConfig: engine arguments, placement and queue bounds."""

from __future__ import annotations

from ray.serve.deployment import Application

from lab_llm.app.builder import build_app, to_llm_config
from lab_llm.app.server import GatedLLMServer
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


def test_the_engine_replica_is_the_ingress_and_the_only_deployment() -> None:
    """One hop: the app is one deployment, the engine's replica, which serves HTTP itself (vLLM's app behind the
    gate); its name stays `LLMServer:<model>`, which plan verification and the bench look for."""
    app = build_app({"engine": {"model": "/m", "served_model_name": "m"}, "auth": AUTH})
    deployment = app._bound_deployment
    assert deployment.name == "LLMServer:m"
    assert issubclass(deployment.func_or_class, GatedLLMServer)
    assert hasattr(deployment.func_or_class, "_asgi_app") or hasattr(
        deployment.func_or_class, "__serve_build_asgi_app__"
    )
    assert not [arg for arg in app._bound_deployment.init_kwargs.values() if isinstance(arg, Application)]
    assert parse_config(deployment.init_kwargs["app_config"]).engine.model_id == "m"


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


def test_proxy_anchors_put_a_serve_proxy_on_that_many_nodes() -> None:
    """Ray Serve runs its proxy only on the head and where a replica runs; `proxy_replicas` placeholder replicas, one
    per node at most, each with a CPU share (never on a head that advertises none), give those nodes one."""
    from lab_llm.app.builder import PROXY_ANCHOR_CPUS

    app = build_app({"engine": {"model": "/m"}, "serving": {"proxy_replicas": 3}, "auth": AUTH})
    anchor = app._bound_deployment.init_kwargs["proxy_anchor"]._bound_deployment
    assert (anchor.name, anchor.num_replicas, anchor._replica_config.max_replicas_per_node) == ("ProxyAnchor", 3, 1)
    assert anchor.ray_actor_options["num_cpus"] == PROXY_ANCHOR_CPUS > 0


def test_overload_is_refused_by_the_gate_never_by_serve() -> None:
    """Serve's own bound answers in plain text (or queues before the gate): it must never bind before the gate's,
    which refuses beyond max_ongoing + max_queued per replica with OpenAI's body and Retry-After."""
    serving = {"num_replicas": 2, "max_ongoing_requests": 16, "max_queued_requests": 64}
    deployment = build_app({"engine": {"model": "/m"}, "serving": serving, "auth": AUTH})._bound_deployment
    assert deployment.max_queued_requests == -1
    assert deployment.max_ongoing_requests > 16 + 64
    assert deployment.num_replicas == 2
