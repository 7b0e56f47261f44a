"""FastAPI dependencies that turn a bearer credential into a `Principal` and check its scopes and models.

Clients send either an access token (from /auth/token) or an API key, both as `Authorization: Bearer …`,
which is what the OpenAI SDKs and OpenWebUI send.

What the gate checks is what the engine will act on: the model a request will really be served by (the only
model when the body names none; the id Ray will look up, `--` read as `/` in a path), a token's user as the
store says now, and a body read the way the route will read it. Whatever the gate cannot read is a 400.
"""

# No `from __future__ import annotations`: FastAPI must evaluate the Annotated[..., Security(closure)] hints.

import json
from collections.abc import Collection
from functools import cached_property
from typing import Any

from fastapi import Depends
from fastapi.security import OAuth2PasswordBearer, SecurityScopes

from lab_llm.app.errors import ApiError, model_not_found, unauthorized
from lab_llm.app.metrics import AUTH_DECISIONS
from lab_llm.auth import (
    AuthStore,
    LoginLimiter,
    Principal,
    TokenError,
    TokenService,
    open_store,
    subject_of_token,
    token_service,
)
from lab_llm.auth.store import API_KEY_PREFIX
from lab_llm.config import AuthConfig

bearer_credential = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)

# Our tokens are about 400 bytes and API keys 50; anything far longer is refused before any parsing.
MAX_CREDENTIAL_BYTES = 4096
# Deeper JSON than this is no OpenAI request; refusing it keeps every later parser away from its recursion limit.
MAX_JSON_DEPTH = 64


class Gate:
    """Everything the app knows about callers. Built lazily per process, since Ray pickles the app to replicas.

    `served_models` are the model ids the engine serves; a request for any other id is a 404 at the gate.
    """

    def __init__(self, config: AuthConfig, served_models: Collection[str] = ()) -> None:
        self.config = config
        self.served_models = tuple(served_models)

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "served_models": self.served_models}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config = state["config"]
        self.served_models = state["served_models"]

    @cached_property
    def store(self) -> AuthStore:
        return open_store(self.config)

    @cached_property
    def tokens(self) -> TokenService:
        return token_service(self.config)

    @cached_property
    def limiter(self) -> LoginLimiter:
        return LoginLimiter(
            per_user=self.config.login_attempts_per_user,
            per_client=self.config.login_attempts_per_client,
            window_s=self.config.login_window_s,
        )

    def principal_for_role(self, subject: str, role: str, credential: str) -> Principal:
        policy = self.config.roles.get(role)
        if policy is None:
            raise ApiError(403, f"role {role!r} is not configured on this server")
        return Principal(
            subject=subject,
            role=role,
            scopes=frozenset(policy.scopes),
            model_patterns=policy.models,
            credential=credential,  # type: ignore[arg-type]
        )

    def authenticate(self, credential: str) -> Principal:
        if len(credential) > MAX_CREDENTIAL_BYTES:
            AUTH_DECISIONS.labels("none", "oversized").inc()
            raise unauthorized("credential too long")
        # API keys may come from a vault in any format, so look the credential up first (one hash, one dict
        # lookup); whatever is not a stored key must be a JWT.
        key = self.store.find_api_key(credential)
        if key is not None:
            return self.principal_for_role(f"key:{key.name}", key.role, "api_key")
        if credential.startswith(API_KEY_PREFIX) or credential.count(".") != 2:
            AUTH_DECISIONS.labels("api_key", "unknown_key").inc()
            raise unauthorized("invalid API key")
        try:
            subject = subject_of_token(self.tokens, self.store, credential)
        except TokenError as error:
            AUTH_DECISIONS.labels("access_token", "rejected").inc()
            raise unauthorized(str(error)) from None
        return self.principal_for_role(subject.name, subject.role, "access_token")

    def authorize(self, credential: str | None, scopes: Collection[str]) -> Principal:
        """The caller behind `credential`, who must hold every one of `scopes`: else a 401 or 403 `ApiError`."""
        if not credential:
            AUTH_DECISIONS.labels("none", "missing").inc()
            raise unauthorized("missing bearer token or API key")
        principal = self.authenticate(credential)
        missing = [scope for scope in scopes if scope not in principal.scopes]
        if missing:
            AUTH_DECISIONS.labels(principal.credential, "forbidden").inc()
            raise ApiError(403, f"role {principal.role!r} may not use this endpoint (needs scope {missing[0]!r})")
        AUTH_DECISIONS.labels(principal.credential, "allowed").inc()
        return principal

    def model_to_serve(self, requested: str | None) -> str:
        """The model that will serve a request naming `requested` (None: the body named none), or a 404.

        Only the exact ids the engine serves are served; anything else, whatever characters it holds (Ray would
        read `base:suffix` as a LoRA adapter of `base`), is a model that does not exist.
        """
        if requested is None:
            if len(self.served_models) == 1:
                return self.served_models[0]
            raise ApiError(400, "`model` is required: this server serves several models", param="model")
        if requested not in self.served_models:
            raise model_not_found(requested)
        return requested


def require(gate: Gate):
    """A dependency for `Security(..., scopes=[...])`: the caller, who must hold every listed scope."""

    async def current_principal(
        security_scopes: SecurityScopes, credential: str | None = Depends(bearer_credential)
    ) -> Principal:
        return gate.authorize(credential, security_scopes.scopes)

    return current_principal


def bearer_of(authorization: bytes | None) -> str | None:
    """The credential of an `Authorization: Bearer …` header value, as `OAuth2PasswordBearer` reads it (scheme
    case-insensitive); None when the header is absent or names another scheme."""
    if not authorization:
        return None
    scheme, _, credential = authorization.decode("latin-1").partition(" ")
    return credential if scheme.lower() == "bearer" and credential else None


def _depth_within(value: Any, limit: int) -> bool:
    """Whether `value` nests no deeper than `limit` containers (iterative, so it cannot recurse too deep)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or a 400 `ApiError` saying why it is not one (bad JSON or UTF-8, not an
    object, nested deeper than `MAX_JSON_DEPTH`)."""
    try:
        body = json.loads(raw)
    except RecursionError:
        raise ApiError(400, f"the request body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:  # bad UTF-8 and bad JSON alike
        raise ApiError(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    if not _depth_within(body, MAX_JSON_DEPTH):
        raise ApiError(400, f"the request body nests deeper than {MAX_JSON_DEPTH} levels")
    return body


def json_text(raw: bytes) -> bytes | str:
    """A JSON body as the parser that reads it for the engine sees it: `json.loads` (Starlette's `Request.json`, which
    vLLM's app uses) reads UTF-8 with a byte order mark, UTF-16 and UTF-32 too (RFC 8259 section 8.1 lets a parser
    ignore the mark), where pydantic's JSON parser takes UTF-8 bytes alone; `raw` itself when it is plain UTF-8."""
    encoding = json.detect_encoding(raw)
    return raw if encoding == "utf-8" else raw.decode(encoding, "surrogatepass")


def model_of(body: dict[str, Any]) -> str | None:
    """The `model` of a JSON request body: None when absent, null or empty (vLLM serves its model for a request that
    names none: `OpenAIServing._is_model_supported`), a 400 when it is not a string."""
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, "`model` must be a string", param="model")
    return model or None


def check_model_allowed(principal: Principal, model: str) -> None:
    if not principal.may_use_model(model):
        AUTH_DECISIONS.labels(principal.credential, "model_forbidden").inc()
        raise ApiError(403, f"role {principal.role!r} may not use model {model!r}", param="model")
