"""Builds the Ray Serve application from one `AppConfig`: the vLLM deployment and the gated ingress."""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from ray import serve
from ray.llm._internal.serve.core.configs.openai_api_models import to_model_metadata
from ray.llm._internal.serve.core.ingress.ingress import init as init_openai_fastapi_app
from ray.serve.deployment import Application
from ray.serve.llm import LLMConfig, build_llm_deployment
from ray.serve.llm.ingress import make_fastapi_ingress
from starlette.exceptions import HTTPException

from lab_llm.app.errors import ApiError, handle_api_error, handle_http_exception, handle_validation_error
from lab_llm.app.ingress import GatedIngress, gated_endpoints
from lab_llm.app.routes import gate_router
from lab_llm.app.security import Gate
from lab_llm.config import AppConfig, parse_config

# Every EngineConfig field but these is a vLLM engine argument of the same name; these are placed elsewhere.
_NOT_ENGINE_ARGUMENTS = {"model", "served_model_name", "env"}


def to_llm_config(config: AppConfig) -> LLMConfig:
    engine, serving = config.engine, config.serving
    engine_kwargs = {
        name: value
        for name, value in engine.model_dump().items()
        if name not in _NOT_ENGINE_ARGUMENTS and value is not None
    }
    # One bundle per rank (TP x PP). On CPU, vLLM's CPU build runs each rank on logical CPUs instead of a GPU.
    bundle: dict[str, float] = {"CPU": serving.cpus_per_worker}
    if serving.accelerator == "gpu":
        bundle["GPU"] = 1
    return LLMConfig(
        model_loading_config={"model_id": engine.model_id, "model_source": engine.model},
        engine_kwargs=engine_kwargs,
        placement_group_config={"bundles": [dict(bundle) for _ in range(engine.world_size)], "strategy": "PACK"},
        runtime_env={"env_vars": dict(engine.env)} if engine.env else None,
        deployment_config={
            "num_replicas": serving.num_replicas,
            "max_ongoing_requests": serving.max_ongoing_requests,
            "max_queued_requests": serving.max_queued_requests,
        },
    )


def build_app(args: dict[str, Any]) -> Application:
    """Ray Serve application builder (`import_path: lab_llm.app:build_app`)."""
    config = parse_config(args, source="the lab-llm application args")
    llm_config = to_llm_config(config)
    gate = Gate(config.auth)

    fastapi_app = init_openai_fastapi_app()
    fastapi_app.add_exception_handler(ApiError, handle_api_error)
    fastapi_app.add_exception_handler(HTTPException, handle_http_exception)
    fastapi_app.add_exception_handler(RequestValidationError, handle_validation_error)
    fastapi_app.include_router(gate_router(gate))
    ingress_cls = make_fastapi_ingress(GatedIngress, endpoint_map=gated_endpoints(gate), app=fastapi_app)

    ingress_options = GatedIngress.get_deployment_options([llm_config])
    ingress_options.pop("autoscaling_config", None)
    ingress = config.serving.ingress
    ingress_options.update(
        num_replicas=ingress.num_replicas,
        # The ingress only relays streams; its queue bound is what turns overload into 503 instead of waiting forever.
        max_ongoing_requests=config.serving.max_ongoing_requests * config.serving.num_replicas,
        max_queued_requests=config.serving.max_queued_requests,
        ray_actor_options={"num_cpus": ingress.num_cpus},
    )
    if ingress.max_replicas_per_node is not None:
        ingress_options["max_replicas_per_node"] = ingress.max_replicas_per_node
    model_id = config.engine.model_id
    return serve.deployment(ingress_cls, name="LabLLMIngress", **ingress_options).bind(
        llm_deployments={model_id: build_llm_deployment(llm_config)},
        model_cards={model_id: to_model_metadata(model_id, llm_config)},
    )
