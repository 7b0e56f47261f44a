"""The auth store and the token service of one deployment, built the one way the CLI and the gate both use."""

from __future__ import annotations

from dataclasses import dataclass

from lab_llm.auth.store import AuthStore
from lab_llm.auth.tokens import SigningKeys, TokenError, TokenService
from lab_llm.config import AuthConfig


def open_store(config: AuthConfig) -> AuthStore:
    """The users and API keys of `config.store_path`; roles outside `config.roles` are refused on change."""
    return AuthStore(config.store_path, known_roles=set(config.roles))


def token_service(config: AuthConfig) -> TokenService:
    """Issues and verifies access tokens with the keys of `config.signing_keys_path`."""
    return TokenService(
        SigningKeys(config.signing_keys_path),
        issuer=config.issuer,
        audience=config.audience,
        ttl_s=config.access_token_ttl_s,
    )


@dataclass(frozen=True)
class TokenSubject:
    """Who a verified token speaks for, as the store says now."""

    name: str
    role: str


def subject_of_token(tokens: TokenService, store: AuthStore, token: str) -> TokenSubject:
    """Verify a token and look its user up in the store as it is now.

    A token is only as good as its user: removed or disabled since it was issued, the token is refused
    (TokenError); a role changed since is the role it acts with from now on.
    """
    claims = tokens.verify(token)
    user = store.content().users.get(str(claims["sub"]))
    if user is None or user.disabled:
        raise TokenError("the token's user no longer exists or is disabled")
    return TokenSubject(name=user.name, role=user.role)


__all__ = ["TokenSubject", "open_store", "subject_of_token", "token_service"]
