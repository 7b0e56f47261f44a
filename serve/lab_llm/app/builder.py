"""Builds the Ray Serve application from one `AppConfig`: the vLLM deployment and the gated ingress."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from ray import serve
from ray.serve.deployment import Application
from starlette.exceptions import HTTPException

from lab_llm.app.engine_contract import (
    LLMConfig,
    add_http_metrics_middleware,
    build_llm_deployment,
    make_fastapi_ingress,
    metrics_lifespan,
    to_model_metadata,
)
from lab_llm.app.errors import (
    ApiError,
    RequestIdMiddleware,
    handle_api_error,
    handle_http_exception,
    handle_validation_error,
)
from lab_llm.app.ingress import GatedIngress, gated_endpoints
from lab_llm.app.openapi import describe_api
from lab_llm.app.placement import CpuThreadBinding, placement_group_config
from lab_llm.app.routes import gate_router
from lab_llm.app.security import Gate
from lab_llm.config import AppConfig, ConfigError, model_layout_problems, parse_config

# Every EngineConfig field but these is a vLLM engine argument of the same name; these are placed elsewhere.
_NOT_ENGINE_ARGUMENTS = {"model", "served_model_name", "env"}


def to_llm_config(config: AppConfig) -> LLMConfig:
    engine, serving = config.engine, config.serving
    engine_kwargs = {
        name: value
        for name, value in engine.model_dump().items()
        if name not in _NOT_ENGINE_ARGUMENTS and value is not None
    }
    # Several CPU ranks need their own cores; the binding is derived on the node that runs them (placement.py).
    sharded_on_cpu = serving.accelerator == "cpu" and engine.world_size > 1
    return LLMConfig(
        model_loading_config={"model_id": engine.model_id, "model_source": engine.model},
        engine_kwargs=engine_kwargs,
        placement_group_config=placement_group_config(config),
        runtime_env={"env_vars": dict(engine.env)} if engine.env else None,
        **({"callback_config": {"callback_class": CpuThreadBinding}} if sharded_on_cpu else {}),
        deployment_config={
            "num_replicas": serving.num_replicas,
            "max_ongoing_requests": serving.max_ongoing_requests,
            "max_queued_requests": serving.max_queued_requests,
        },
    )


def check_model_layout(config: AppConfig) -> None:
    """Refuse a layout the model cannot be split into (heads, layers), when its config.json is readable here.

    Raises ConfigError naming the setting. A model id (no local path) is left to vLLM, which checks the same.
    """
    config_json = Path(config.engine.model) / "config.json"
    if not config_json.is_file():
        return
    problems = model_layout_problems(config.engine, config_json)
    if problems:
        raise ConfigError(f"the layout does not fit the model {config.engine.model}:\n  " + "\n  ".join(problems))


def model_created(model: str) -> int:
    """`created` of the model object (Unix seconds): when the model's `config.json` was written, if it is on this
    machine; else now. Stable across rebuilds of the same deployment, so Serve sees unchanged arguments."""
    try:
        return int((Path(model) / "config.json").stat().st_mtime)
    except OSError:
        return int(time.time())


def build_fastapi_app(gate: Gate) -> FastAPI:
    """The app in front of the engine: the gate's own routes, OpenAI errors for everything, a request id on every
    answer. The engine routes are added by `make_fastapi_ingress` (see `gated_ingress`)."""
    app = FastAPI(title="lab-llm", version="1", docs_url=None, redoc_url=None, lifespan=metrics_lifespan)
    add_http_metrics_middleware(app)
    # As ray.serve.llm's own app: browsers (OpenWebUI's direct connections) may call from any origin.
    app.add_middleware(
        CORSMiddleware, allow_origins=["*"], allow_credentials=True, allow_methods=["*"], allow_headers=["*"]
    )
    app.add_middleware(RequestIdMiddleware)  # added last, so it is outermost and sees every exception
    app.add_exception_handler(ApiError, handle_api_error)
    app.add_exception_handler(HTTPException, handle_http_exception)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.include_router(gate_router(gate))
    describe_api(app)
    return app


def gated_ingress(config: AppConfig) -> tuple[type[GatedIngress], FastAPI, Gate]:
    """The ingress deployment class bound to its FastAPI app (also what the in-process tests drive)."""
    gate = Gate(config.auth, served_models=[config.engine.model_id])
    fastapi_app = build_fastapi_app(gate)
    ingress_cls = make_fastapi_ingress(GatedIngress, endpoint_map=gated_endpoints(gate), app=fastapi_app)
    return ingress_cls, fastapi_app, gate


def build_app(args: dict[str, Any]) -> Application:
    """Ray Serve application builder (`import_path: lab_llm.app:build_app`)."""
    config = parse_config(args, source="the lab-llm application args")
    check_model_layout(config)
    llm_config = to_llm_config(config)
    ingress_cls, _fastapi_app, _gate = gated_ingress(config)

    ingress_options = GatedIngress.get_deployment_options([llm_config])
    ingress_options.pop("autoscaling_config", None)
    ingress = config.serving.ingress
    serving = config.serving
    ingress_options.update(
        num_replicas=ingress.num_replicas,
        # The ingress only relays streams. It takes every request that may be running or waiting at the engine and
        # as many again, so overload is refused by the engine deployment's queue bound, where the ingress answers
        # it in OpenAI's format (503 + Retry-After), instead of by Serve's proxy (503 as plain text).
        max_ongoing_requests=2 * (serving.max_ongoing_requests * serving.num_replicas + serving.max_queued_requests),
        max_queued_requests=-1,
        ray_actor_options={
            "num_cpus": ingress.num_cpus,
            **({"resources": dict(ingress.resources)} if ingress.resources else {}),
        },
    )
    if ingress.max_replicas_per_node is not None:
        ingress_options["max_replicas_per_node"] = ingress.max_replicas_per_node
    model_id = config.engine.model_id
    return serve.deployment(ingress_cls, name="LabLLMIngress", **ingress_options).bind(
        llm_deployments={model_id: build_llm_deployment(llm_config)},
        model_cards={model_id: to_model_metadata(model_id, llm_config)},
        created=model_created(config.engine.model),
    )
