"""The replica's app in process: built the way `GatedLLMServer` builds it, driven by FastAPI's test client, no Ray.

In the replica the gate wraps vLLM's own OpenAI app. Here it wraps `FakeVLLM`, which answers the way vLLM's app
does (`vllm/entrypoints/serve/exception_handling/`): a chat completion; an error as vLLM's JSON `ErrorResponse`
with the HTTP status in `error.code`; an SSE stream, whose errors are `data: {"error": ...}` events; or an
exception that escapes after vLLM's error middleware answered 500 (Starlette's `ServerErrorMiddleware` re-raises).
The default-deny test (`test_gate.py`) also runs the gate around vLLM's real app, built by vLLM's `build_app`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.testclient import TestClient
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.types import ASGIApp

from lab_llm.app.gate import GateMiddleware
from lab_llm.app.security import Gate
from lab_llm.app.server import gated_asgi_app
from lab_llm.auth.store import hash_password
from lab_llm.auth.tokens import generate_signing_keys_document
from lab_llm.config import AppConfig, parse_config
from tests.conftest import REPO_ROOT

SERVED_MODEL = "allowed/x"  # a served id with a slash: `GET /v1/models/allowed--x` is how a client names it
PASSWORD = "correct-horse-battery"
CONTRACT_FILE = REPO_ROOT / "tests" / "contract" / "openai-openapi.reduced.json"
CREATED = 1_700_000_000


def chat_response(model: str = SERVED_MODEL) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


def vllm_error(
    status: int, message: str, param: str | None = None, error_type: str = "BadRequestError"
) -> dict[str, Any]:
    """vLLM's `ErrorResponse` body (`create_error_response`): the HTTP status in `error.code`, the request field at
    fault in `param` (a `VLLMValidationError`'s `parameter`)."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": status}}


@dataclass
class FakeVLLM:
    """Stands in for vLLM's OpenAI app. `failure` answers the next request: `(status, message[, param])` as vLLM's
    JSON error, or an exception raised in the route (vLLM's error middleware answers 500, then re-raises). `stream`
    items are SSE texts or exceptions raised mid-stream. `dead` is the engine's `errored` flag."""

    failure: tuple[int, str] | tuple[int, str, str] | BaseException | None = None
    health_failure: BaseException | None = None
    stream: list[Any] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    dead: bool = False

    def app(self) -> ASGIApp:
        api = FastAPI()

        async def answer(request: Request) -> Any:
            self.received.append(json.loads(await request.body()))
            failure, stream = self.failure, list(self.stream)
            if isinstance(failure, BaseException):
                raise failure
            if failure is not None:
                return JSONResponse(vllm_error(*failure), status_code=failure[0])
            if stream:

                async def events() -> AsyncIterator[str]:
                    for item in stream:
                        if isinstance(item, BaseException):
                            raise item
                        yield item

                return StreamingResponse(events(), media_type="text/event-stream")
            return JSONResponse(chat_response())

        api.add_api_route("/v1/chat/completions", answer, methods=["POST"])
        api.add_api_route("/v1/completions", answer, methods=["POST"])

        async def vllm_500(_request: Request, _error: Exception) -> JSONResponse:
            body = vllm_error(500, "internal at /home/lab pid=1", error_type="InternalServerError")
            return JSONResponse(body, status_code=500)

        # As vLLM registers its `Exception` handler: Starlette runs it in ServerErrorMiddleware, which re-raises.
        return ServerErrorMiddleware(api, handler=vllm_500)

    async def check_health(self) -> None:
        if self.health_failure is not None:
            raise self.health_failure


@dataclass
class GatedApp:
    client: TestClient
    app: ASGIApp  # the replica's whole app
    routes_app: FastAPI  # the gate's own routes
    gate: Gate
    middleware: GateMiddleware
    engine: FakeVLLM
    config: AppConfig
    tokens: dict[str, str]
    keys: dict[str, str]

    def headers(self, who: str) -> dict[str, str]:
        credential = self.tokens.get(who) or self.keys[who]
        return {"Authorization": f"Bearer {credential}"}


@functools.cache
def password_hash() -> str:
    return hash_password(PASSWORD)


def app_config(tmp_path: Path, serving: dict[str, Any] | None = None, **auth: Any) -> AppConfig:
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{}")
    keys_file = tmp_path / "signing-keys.yaml"
    keys_file.write_text(yaml.safe_dump(generate_signing_keys_document("k1")))
    return parse_config(
        {
            "engine": {"model": str(model), "served_model_name": SERVED_MODEL, "max_model_len": 64},
            "serving": {"accelerator": "cpu", **(serving or {})},
            "auth": {
                "store_path": str(tmp_path / "store.yaml"),
                "signing_keys_path": str(keys_file),
                "roles": {
                    "admin": {"scopes": ["models", "chat", "completions", "metrics", "admin"]},
                    "user": {"scopes": ["models", "chat", "completions"]},
                    "viewer": {"scopes": ["models"]},
                    "restricted": {"scopes": ["models", "chat", "completions"], "models": ["allowed-*"]},
                },
                **auth,
            },
        }
    )


def build_gated_app(
    tmp_path: Path,
    *,
    engine_app: ASGIApp | None = None,
    serving: dict[str, Any] | None = None,
    **auth: Any,
) -> GatedApp:
    config = app_config(tmp_path, serving, **auth)
    engine = FakeVLLM()
    app, routes_app, gate, middleware = gated_asgi_app(
        config,
        engine_app or engine.app(),
        engine_health=engine.check_health,
        engine_dead=lambda: engine.dead,
        created=CREATED,
    )
    store = gate.store
    users = {"alice": "admin", "bob": "user", "vera": "viewer", "rita": "restricted"}
    # One argon2 hash for every user: hashing is slow on purpose, and the tests need many apps.
    config.auth.store_path.write_text(
        yaml.safe_dump(
            {"users": {name: {"role": role, "password_hash": password_hash()} for name, role in users.items()}}
        )
    )
    tokens = {name: gate.tokens.issue(name, role) for name, role in users.items()}
    keys = {role: store.add_api_key(f"{role}-key", role)[1] for role in ("user", "restricted")}
    client = TestClient(app, raise_server_exceptions=False)
    return GatedApp(
        client, app, routes_app, gate, middleware, engine, config, tokens, {f"{k}-key": v for k, v in keys.items()}
    )
