"""Routes of the gate itself: models by role, login (OAuth2 password flow), API-key administration, liveness,
readiness, metrics; and the two engine routes, described here for the OpenAPI document and answered by
`gate.GateMiddleware`, which hands them to vLLM's app once the gate let them through."""

# No `from __future__ import annotations`: FastAPI must evaluate the Annotated[..., Security(closure)] hints.

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response, Security
from fastapi.responses import JSONResponse
from fastapi.security import OAuth2PasswordRequestForm
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from lab_llm.app.engine_contract import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatCompletionStreamResponse,
    CompletionRequest,
    CompletionResponse,
    CompletionStreamResponse,
    model_path_id,
)
from lab_llm.app.engine_errors import ENGINE_DOWN_RETRY_AFTER_S
from lab_llm.app.errors import (
    ApiError,
    error_response,
    error_responses,
    internal_error_message,
    request_id_of,
    unauthorized,
)
from lab_llm.app.metrics import API_KEY_CHANGES, LOGINS
from lab_llm.app.security import Gate, check_model_allowed, require
from lab_llm.auth import Principal, StoreError
from lab_llm.auth.store import ConflictError

logger = logging.getLogger("lab_llm.app")

# How long readiness waits for the engine's own health check before it calls the engine not ready.
READINESS_TIMEOUT_S = 5.0


class ModelObject(BaseModel):
    """OpenAI's Model object (`components.schemas.Model`)."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="Unix time (seconds) at which this deployment of the model was built.")
    owned_by: str
    max_model_len: int | None = Field(
        default=None,
        description="The longest prompt plus completion, in tokens, that the engine serves: vLLM's field of the same "
        "name on its own model objects, which clients read to size their context window (absent when unknown).",
    )


class ModelListResponse(BaseModel):
    """OpenAI's `ListModelsResponse`."""

    object: Literal["list"] = "list"
    data: list[ModelObject]


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int


class NewApiKey(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: str


class ApiKeyInfo(BaseModel):
    id: str
    name: str
    role: str
    created_at: str


class CreatedApiKey(ApiKeyInfo):
    key: str = Field(description="Shown once; only its SHA-256 is stored.")


def _engine_operation(request: type[BaseModel], response: type[BaseModel], chunk: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` of an engine route, shaped as OpenAI's document: the JSON body, and the 200 answer as JSON or,
    with `stream`, as server-sent events whose `data:` lines each carry one chunk (then `data: [DONE]`). The schemas
    live in components under the engine classes' names (`openapi.describe_api` adds them)."""

    def ref(model: type[BaseModel]) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref(request)}}},
        "responses": {
            "200": {
                "description": f"A {response.__name__}; with `stream: true`, server-sent events, each `data:` line "
                f"one {chunk.__name__}, the last `data: [DONE]`.",
                "content": {"application/json": {"schema": ref(response)}, "text/event-stream": {"schema": ref(chunk)}},
            }
        },
    }


def gate_router(
    gate: Gate,
    *,
    engine_health: Callable[[], Awaitable[Any]],
    created: int,
    owned_by: str = "lab-llm",
    max_model_len: int | None = None,
) -> APIRouter:
    """The gate's routes. `engine_health()` raises when the engine cannot serve (readiness); `created` is the model
    objects' `created` (Unix seconds), `max_model_len` their context length in tokens (None: left out)."""
    router = APIRouter()
    caller = require(gate)

    def model_object(model_id: str) -> ModelObject:
        return ModelObject(id=model_id, created=created, owned_by=owned_by, max_model_len=max_model_len)

    @router.get(
        "/v1/models",
        response_model=ModelListResponse,
        response_model_exclude_none=True,
        responses=error_responses(401, 403, 500),
        summary="List the models the caller may use",
    )
    async def visible_models(
        principal: Annotated[Principal, Security(caller, scopes=["models"])],
    ) -> ModelListResponse:
        return ModelListResponse(
            data=[model_object(model) for model in gate.served_models if principal.may_use_model(model)]
        )

    @router.get(
        "/v1/models/{model:path}",
        response_model=ModelObject,
        response_model_exclude_none=True,
        responses=error_responses(401, 403, 404, 500),
        summary="Retrieve a model",
    )
    async def retrieve_model(
        model: str, principal: Annotated[Principal, Security(caller, scopes=["models"])]
    ) -> ModelObject:
        # Clients name an id holding `/` with `--` in the path (Ray's convention); check the id that is meant.
        served = gate.model_to_serve(model_path_id(model))
        check_model_allowed(principal, served)
        return model_object(served)

    statuses = (400, 401, 403, 404, 429, 500, 503)
    for path, classes, summary in (
        ("/v1/completions", (CompletionRequest, CompletionResponse, CompletionStreamResponse), "Create a completion"),
        (
            "/v1/chat/completions",
            (ChatCompletionRequest, ChatCompletionResponse, ChatCompletionStreamResponse),
            "Create a chat completion",
        ),
    ):
        router.add_api_route(
            path,
            _answered_by_the_gate_middleware,
            methods=["POST"],
            responses=error_responses(*statuses),
            openapi_extra=_engine_operation(*classes),
            summary=f"{summary} (streamed as server-sent events when `stream` is true)",
        )

    @router.get(
        "/readyz",
        responses=error_responses(503),
        summary="Readiness: 200 when the engine can serve, 503 otherwise (no credential needed)",
    )
    async def ready(request: Request) -> Response:
        try:
            async with asyncio.timeout(READINESS_TIMEOUT_S):
                await engine_health()
        except Exception as error:
            logger.warning("readiness: engine not ready (request %s): %r", request_id_of(request), error)
            return error_response(
                request,
                503,
                "the engine is not ready to serve",
                headers={"Retry-After": str(ENGINE_DOWN_RETRY_AFTER_S)},
            )
        return JSONResponse({"status": "ready"})

    @router.get("/healthz", summary="Liveness: the gate answers (says nothing about the engine; see /readyz)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    if gate.config.metrics_public:
        router.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    else:
        router.add_api_route(
            "/metrics",
            metrics,
            methods=["GET"],
            include_in_schema=False,
            dependencies=[Security(caller, scopes=["metrics"])],
        )

    async def issue_token(request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> TokenResponse:
        client = request.client.host if request.client else "unknown"
        wait_s = gate.limiter.retry_after(form.username, client)
        if wait_s > 0:
            LOGINS.labels("throttled").inc()
            retry_after = {"Retry-After": str(int(wait_s) + 1)}
            raise ApiError(
                429, "too many failed logins; try again later", code="rate_limit_exceeded", headers=retry_after
            )
        # argon2 takes tens of milliseconds of CPU on purpose: off the event loop, so other requests go on.
        user = await run_in_threadpool(gate.store.verify_password, form.username, form.password)
        if user is None:
            gate.limiter.record_failure(form.username, client)
            LOGINS.labels("failed").inc()
            raise unauthorized("incorrect username or password")
        gate.limiter.record_success(form.username)
        LOGINS.labels("ok").inc()
        return TokenResponse(access_token=gate.tokens.issue(user.name, user.role), expires_in=gate.tokens.ttl_s)

    # /token is where clients written for the reference lab's earlier gateway post; /auth/token is the documented path.
    for path in ("/auth/token", "/token"):
        router.add_api_route(
            path,
            issue_token,
            methods=["POST"],
            response_model=TokenResponse,
            responses=error_responses(400, 401, 429),
            summary="Log in (OAuth2 password flow): a bearer access token",
        )

    @router.get("/admin/keys", response_model=list[ApiKeyInfo], responses=error_responses(401, 403))
    async def list_keys(_admin: Annotated[Principal, Security(caller, scopes=["admin"])]) -> list[ApiKeyInfo]:
        return [ApiKeyInfo(id=k.id, name=k.name, role=k.role, created_at=k.created_at) for k in gate.store.api_keys()]

    @router.post(
        "/admin/keys", response_model=CreatedApiKey, status_code=201, responses=error_responses(400, 401, 403, 409, 503)
    )
    async def create_key(
        new_key: NewApiKey, _admin: Annotated[Principal, Security(caller, scopes=["admin"])]
    ) -> CreatedApiKey:
        _refuse_key_changes_unless_allowed(gate, "create")
        try:
            # The store's file lock may be held by another process (`lab-llm keys`, an llm_app run): wait in a thread.
            record, key, _created = await run_in_threadpool(gate.store.add_api_key, new_key.name, new_key.role)
        except StoreError as error:
            raise ApiError(409 if isinstance(error, ConflictError) else 400, str(error)) from None
        except OSError:
            raise ApiError(503, "the key store is read-only here; create keys with `lab-llm keys create`") from None
        API_KEY_CHANGES.labels("created").inc()
        return CreatedApiKey(id=record.id, name=record.name, role=record.role, created_at=record.created_at, key=key)

    @router.delete("/admin/keys/{key_id}", status_code=204, responses=error_responses(401, 403, 404, 503))
    async def revoke_key(key_id: str, _admin: Annotated[Principal, Security(caller, scopes=["admin"])]) -> Response:
        _refuse_key_changes_unless_allowed(gate, "revoke")
        try:
            revoked = await run_in_threadpool(gate.store.revoke_api_key, key_id)
        except OSError:
            raise ApiError(503, "the key store is read-only here; revoke keys with `lab-llm keys revoke`") from None
        if not revoked:
            raise ApiError(404, f"no API key with id or name {key_id!r}", param="key_id")
        API_KEY_CHANGES.labels("revoked").inc()
        return Response(status_code=204)

    return router


def _refuse_key_changes_unless_allowed(gate: Gate, verb: str) -> None:
    """503 when this gate's store is one of several copies (`auth.admin_key_changes: false`): a change here would
    reach one gate only."""
    if not gate.config.admin_key_changes:
        raise ApiError(
            503,
            "API keys cannot be changed through this endpoint: each engine replica reads its own copy of the key "
            f"store, so a change would reach one of them only; {verb} keys with `lab-llm keys {verb}` where the store "
            "is made (llm_app: on the Ray head, or llm_app_api_keys) and run llm_app to distribute them",
        )


async def _answered_by_the_gate_middleware(request: Request) -> Response:
    """Never reached: `GateMiddleware` answers POSTs to the engine routes before the gate's app sees them."""
    raise ApiError(500, internal_error_message(request_id_of(request)))
