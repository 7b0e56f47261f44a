"""The engine's replica as the HTTP entry point: `LLMServer` serving vLLM's own OpenAI app behind the gate.

Ray Serve builds the replica's ASGI app after the engine started (`serve.ingress()` without an app calls
`__serve_build_asgi_app__`; `LLMServer`'s returns vLLM's app, `ray/llm/_internal/serve/core/server/llm_server.py`).
With `RAY_SERVE_ENABLE_HA_PROXY=1` the replica listens on a port of its own and HAProxy forwards to it; no Python
proxy and no second replica sit on the request path. The gate (`gate.GateMiddleware`) wraps vLLM's app, so only
what lab-llm publishes answers.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from lab_llm.app.engine_contract import LLMConfig, LLMServer, engine_errored, served_max_model_len
from lab_llm.app.errors import (
    ApiError,
    RequestIdMiddleware,
    handle_api_error,
    handle_http_exception,
    handle_validation_error,
)
from lab_llm.app.gate import GateMiddleware
from lab_llm.app.openapi import describe_api
from lab_llm.app.routes import gate_router
from lab_llm.app.security import Gate
from lab_llm.app.tool_calls import answer_cut_off_calls_as_streamed
from lab_llm.config import AppConfig


def build_gate_app(gate: Gate, *, engine_health: Any, created: int, max_model_len: int | None = None) -> FastAPI:
    """The gate's own FastAPI app: its routes, OpenAI errors for everything (404 for any path it does not publish)."""
    # No redirect for a trailing slash (Starlette's default answers 307 with an empty body, and many clients drop a
    # POST body on a redirect): every path has one spelling, the one the gate matches, and any other is a 404.
    app = FastAPI(title="lab-llm", version="1", docs_url=None, redoc_url=None, redirect_slashes=False)
    app.add_exception_handler(ApiError, handle_api_error)
    app.add_exception_handler(HTTPException, handle_http_exception)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.include_router(gate_router(gate, engine_health=engine_health, created=created, max_model_len=max_model_len))
    describe_api(app)
    return app


def in_flight_limit(config: AppConfig) -> int:
    """Engine requests one replica holds before it refuses more: those it runs plus those allowed to wait."""
    return config.serving.max_ongoing_requests + config.serving.max_queued_requests


def gated_asgi_app(
    config: AppConfig,
    engine_app: ASGIApp,
    *,
    engine_health: Any,
    engine_dead: Any = lambda: False,
    created: int = 0,
    answer_request_id: bool = True,
) -> tuple[ASGIApp, FastAPI, Gate, GateMiddleware]:
    """The replica's whole ASGI app around `engine_app` (vLLM's): CORS from any origin
    (OpenWebUI's direct connections; ray.serve.llm allows any origin too, while `vllm serve` 0.32 allows none unless
    `--allowed-origins` names them), the request id, the gate. Returns (app, gate's FastAPI app, gate,
    middleware); the last three for the in-process tests. `answer_request_id=False` in Serve's replica, whose own
    server answers the `x-request-id` header (see `RequestIdMiddleware`)."""
    gate = Gate(config.auth, served_models=[config.engine.model_id])
    # The engine's own context length (derived from the model when the config gives none), as vLLM's /v1/models says.
    max_model_len = served_max_model_len(engine_app) or config.engine.max_model_len
    gate_app = build_gate_app(gate, engine_health=engine_health, created=created, max_model_len=max_model_len)
    middleware = GateMiddleware(
        engine_app, gate_app, gate, max_in_flight=in_flight_limit(config), engine_dead=engine_dead
    )
    app: ASGIApp = RequestIdMiddleware(middleware, answer_header=answer_request_id)
    app = CORSMiddleware(app, allow_origins=["*"], allow_credentials=True, allow_methods=["*"], allow_headers=["*"])
    return app, gate_app, gate, middleware


class GatedLLMServer(LLMServer):
    """`LLMServer` whose HTTP app is vLLM's, behind lab-llm's gate, its chat handler answering a forced tool call
    cut off by max_tokens as it streams it (`tool_calls.answer_cut_off_calls_as_streamed`). `app_config` is one
    `AppConfig` mapping; `proxy_anchor` (the handle of `builder.ProxyAnchor`, when `serving.proxy_replicas`) is only
    held."""

    # Ray Serve awaits an async constructor (LLMServer's is one: the engine starts in it).
    async def __init__(  # type: ignore[misc]
        self,
        llm_config: LLMConfig,
        *,
        app_config: dict[str, Any],
        created: int = 0,
        proxy_anchor: Any = None,
        **kwargs: Any,
    ):
        self._proxy_anchor = proxy_anchor
        self._app_config = AppConfig.model_validate(app_config)
        self._created = created
        await super().__init__(llm_config, **kwargs)

    async def __serve_build_asgi_app__(self) -> ASGIApp:
        engine_app = await super().__serve_build_asgi_app__()
        answer_cut_off_calls_as_streamed(engine_app)
        app, _gate_app, _gate, _middleware = gated_asgi_app(
            self._app_config,
            engine_app,
            engine_health=self.check_health,
            engine_dead=lambda: engine_errored(self),
            created=self._created,
            answer_request_id=False,
        )
        return app
