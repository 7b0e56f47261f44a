"""Builds the Ray Serve application from one `AppConfig`: the engine's replica, which is also the HTTP entry point.

One deployment, `LLMServer:<model>`: `server.GatedLLMServer`, vLLM's own OpenAI app behind the gate. Serve runs it
as an ingress deployment (`serve.ingress()`), so with `RAY_SERVE_ENABLE_HA_PROXY=1` HAProxy forwards client
connections straight to the replica's own HTTP port (see README, "The request path").
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ray import serve

from lab_llm.app.engine_contract import LLMConfig, build_llm_deployment
from lab_llm.app.placement import CpuThreadBinding, placement_group_config
from lab_llm.app.server import GatedLLMServer, in_flight_limit
from lab_llm.config import AppConfig, ConfigError, model_layout_problems, parse_config

# Headroom of Serve's own per-replica bound over the gate's: the gate's routes (models, health, login) also count.
GATE_ROUTES_HEADROOM = 64
# A CPU share, so that no proxy anchor lands on a head that advertises no CPUs (KubeRay's LLM samples: num-cpus 0).
PROXY_ANCHOR_CPUS = 0.1

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
    callbacks: dict[str, Any] = {"callback_config": {"callback_class": CpuThreadBinding}} if sharded_on_cpu else {}
    return LLMConfig(
        model_loading_config={"model_id": engine.model_id, "model_source": engine.model},
        engine_kwargs=engine_kwargs,
        placement_group_config=placement_group_config(config),
        runtime_env={"env_vars": dict(engine.env)} if engine.env else None,
        **callbacks,
        deployment_config={
            "num_replicas": serving.num_replicas,
            "max_ongoing_requests": serving.max_ongoing_requests,
            "max_queued_requests": serving.max_queued_requests,
        },
        # vLLM's own handlers stream straight to the client; Ray's chunk batching (50 ms by default, applied on the
        # handle path only, which nothing here calls) stays off so a handle caller could not delay a first token.
        experimental_configs={"stream_batching_interval_ms": 0},
        # vLLM's own Prometheus stat logger, in the replica's default registry, served by the gate's /metrics under
        # vLLM's names (vllm:...), as `vllm serve` publishes them. Ray's wrapper (log_engine_metrics, on by default)
        # records every stat through Ray's metrics agent instead: about 1 ms of the replica's CPU per request (py-spy,
        # bench/README.md), which the one-hop budget (issue 12) cannot carry.
        log_engine_metrics=False,
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


class ProxyAnchor:
    """Serves nothing: its replicas, one per node, make Ray Serve run its proxy on those nodes (`proxy_replicas`)."""

    def ping(self) -> str:
        return "ok"


def build_app(args: dict[str, Any]) -> serve.Application:
    """Ray Serve application builder (`import_path: lab_llm.app:build_app`)."""
    config = parse_config(args, source="the lab-llm application args")
    check_model_layout(config)
    llm_config = to_llm_config(config)
    bind_kwargs: dict[str, Any] = {
        "app_config": config.model_dump(mode="json"),
        "created": model_created(config.engine.model),
    }
    if config.serving.proxy_replicas:
        anchor = serve.deployment(
            name="ProxyAnchor",
            num_replicas=config.serving.proxy_replicas,
            max_replicas_per_node=1,
            ray_actor_options={"num_cpus": PROXY_ANCHOR_CPUS},
        )(ProxyAnchor)
        bind_kwargs["proxy_anchor"] = anchor.bind()
    return build_llm_deployment(
        llm_config,
        name_prefix="LLMServer:",
        deployment_cls=serve.ingress()(GatedLLMServer),
        bind_kwargs=bind_kwargs,
        # The gate bounds the engine requests in flight and answers overload in OpenAI's format (503 + Retry-After);
        # Serve's own bound must never be the one that refuses (its answer is plain text) or queues before the gate.
        override_serve_options={
            "max_ongoing_requests": in_flight_limit(config) + GATE_ROUTES_HEADROOM,
            "max_queued_requests": -1,
        },
    )
