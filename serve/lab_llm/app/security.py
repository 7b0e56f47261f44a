"""FastAPI dependencies that turn a bearer credential into a `Principal` and check its scopes and models.

Clients send either an access token (from /auth/token) or an API key, both as `Authorization: Bearer …`,
which is what the OpenAI SDKs and OpenWebUI send.
"""

# No `from __future__ import annotations`: FastAPI must evaluate the Annotated[..., Security(closure)] hints.

import json
from functools import cached_property
from typing import Any

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer, SecurityScopes

from lab_llm.app.errors import ApiError, unauthorized
from lab_llm.app.metrics import AUTH_DECISIONS
from lab_llm.auth import AuthStore, LoginLimiter, Principal, SigningKeys, TokenError, TokenService
from lab_llm.auth.store import API_KEY_PREFIX
from lab_llm.config import AuthConfig

bearer_credential = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


class Gate:
    """Everything the app knows about callers. Built lazily per process, since Ray pickles the app to replicas."""

    def __init__(self, config: AuthConfig) -> None:
        self.config = config

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config = state["config"]

    @cached_property
    def store(self) -> AuthStore:
        return AuthStore(self.config.store_path, known_roles=set(self.config.roles))

    @cached_property
    def tokens(self) -> TokenService:
        return TokenService(
            SigningKeys(self.config.signing_keys_path),
            issuer=self.config.issuer,
            audience=self.config.audience,
            ttl_s=self.config.access_token_ttl_s,
        )

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
        # API keys may come from a vault in any format, so look the credential up first (one hash, one dict
        # lookup); whatever is not a stored key must be a JWT.
        key = self.store.find_api_key(credential)
        if key is not None:
            return self.principal_for_role(f"key:{key.name}", key.role, "api_key")
        if credential.startswith(API_KEY_PREFIX) or credential.count(".") != 2:
            AUTH_DECISIONS.labels("api_key", "unknown_key").inc()
            raise unauthorized("invalid API key")
        try:
            claims = self.tokens.verify(credential)
        except TokenError as error:
            AUTH_DECISIONS.labels("access_token", "rejected").inc()
            raise unauthorized(str(error)) from None
        return self.principal_for_role(str(claims["sub"]), str(claims["role"]), "access_token")


def require(gate: Gate):
    """A dependency for `Security(..., scopes=[...])`: the caller, who must hold every listed scope."""

    async def current_principal(
        security_scopes: SecurityScopes, credential: str | None = Depends(bearer_credential)
    ) -> Principal:
        if not credential:
            AUTH_DECISIONS.labels("none", "missing").inc()
            raise unauthorized("missing bearer token or API key")
        principal = gate.authenticate(credential)
        missing = [scope for scope in security_scopes.scopes if scope not in principal.scopes]
        if missing:
            AUTH_DECISIONS.labels(principal.credential, "forbidden").inc()
            raise ApiError(403, f"role {principal.role!r} may not use this endpoint (needs scope {missing[0]!r})")
        AUTH_DECISIONS.labels(principal.credential, "allowed").inc()
        return principal

    return current_principal


async def requested_model(request: Request) -> str | None:
    """The `model` of a JSON request body, if any; a body that is not JSON is left to the route to reject."""
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else None


def check_model_allowed(principal: Principal, model: str | None) -> None:
    if model is not None and not principal.may_use_model(model):
        AUTH_DECISIONS.labels(principal.credential, "model_forbidden").inc()
        raise ApiError(403, f"role {principal.role!r} may not use model {model!r}", param="model")
