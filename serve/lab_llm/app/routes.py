"""Routes of the gate itself: login (OAuth2 password flow), API-key administration, liveness, metrics.

Readiness (`/readyz`, whether the engine can serve) is a route of the ingress, which holds the engine handles."""

# No `from __future__ import annotations`: FastAPI must evaluate the Annotated[..., Security(closure)] hints.

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, Security
from fastapi.security import OAuth2PasswordRequestForm
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from lab_llm.app.errors import ApiError, error_responses, unauthorized
from lab_llm.app.metrics import API_KEY_CHANGES, LOGINS
from lab_llm.app.security import Gate, require
from lab_llm.auth import Principal, StoreError
from lab_llm.auth.store import ConflictError


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


def gate_router(gate: Gate) -> APIRouter:
    router = APIRouter()
    caller = require(gate)

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

    # /token is where the seed's clients post; /auth/token is the documented path.
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
        try:
            record, key, _created = gate.store.add_api_key(new_key.name, new_key.role)
        except StoreError as error:
            raise ApiError(409 if isinstance(error, ConflictError) else 400, str(error)) from None
        except OSError:
            raise ApiError(503, "the key store is read-only here; create keys with `lab-llm keys create`") from None
        API_KEY_CHANGES.labels("created").inc()
        return CreatedApiKey(id=record.id, name=record.name, role=record.role, created_at=record.created_at, key=key)

    @router.delete("/admin/keys/{key_id}", status_code=204, responses=error_responses(401, 403, 404, 503))
    async def revoke_key(key_id: str, _admin: Annotated[Principal, Security(caller, scopes=["admin"])]) -> Response:
        try:
            revoked = gate.store.revoke_api_key(key_id)
        except OSError:
            raise ApiError(503, "the key store is read-only here; revoke keys with `lab-llm keys revoke`") from None
        if not revoked:
            raise ApiError(404, f"no API key with id or name {key_id!r}", param="key_id")
        API_KEY_CHANGES.labels("revoked").inc()
        return Response(status_code=204)

    return router
