"""Who may call the API: users and API keys (store), signed access tokens (tokens), login throttling (limiter)."""

from lab_llm.auth.limiter import LoginLimiter
from lab_llm.auth.principal import Principal
from lab_llm.auth.services import TokenSubject, open_store, subject_of_token, token_service
from lab_llm.auth.store import ApiKey, AuthStore, StoreError, User
from lab_llm.auth.tokens import SigningKeys, TokenError, TokenService

__all__ = [
    "ApiKey",
    "AuthStore",
    "LoginLimiter",
    "Principal",
    "SigningKeys",
    "StoreError",
    "TokenError",
    "TokenService",
    "TokenSubject",
    "User",
    "open_store",
    "subject_of_token",
    "token_service",
]
