"""Signed access tokens (JWT, HS256) with key ids, so signing keys rotate without downtime.

The signing-keys file lists every key still accepted and names the one that signs new tokens:

    active_kid: "2026-11"
    keys:
      - {kid: "2026-11", secret: "<at least 32 random bytes, base64 or text>"}
      - {kid: "2026-10", secret: "..."}   # still accepted until its tokens expire

The algorithm is fixed here and never taken from a token's header; `none` and every other algorithm are refused.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from lab_llm.auth.watched_file import WatchedYamlFile

ALGORITHM = "HS256"
_MIN_SECRET_BYTES = 32
_LEEWAY_S = 10
REQUIRED_CLAIMS = ["sub", "role", "iat", "nbf", "exp", "iss", "aud", "jti"]


class TokenError(Exception):
    """A token that is not accepted; the message is safe to show to the caller."""


@dataclass(frozen=True)
class KeySet:
    active_kid: str
    secrets_by_kid: dict[str, bytes]


def _parse_keys(raw: object) -> KeySet:
    if not isinstance(raw, dict) or not isinstance(raw.get("keys"), list) or not raw["keys"]:
        raise ValueError("signing keys: expected a mapping with a non-empty `keys` list")
    secrets_by_kid: dict[str, bytes] = {}
    for entry in raw["keys"]:
        kid, secret = str(entry.get("kid", "")), str(entry.get("secret", ""))
        if not kid:
            raise ValueError("signing keys: every key needs a `kid`")
        if len(secret.encode()) < _MIN_SECRET_BYTES:
            raise ValueError(f"signing keys: key {kid!r} is shorter than {_MIN_SECRET_BYTES} bytes")
        secrets_by_kid[kid] = secret.encode()
    active = str(raw.get("active_kid") or raw["keys"][0]["kid"])
    if active not in secrets_by_kid:
        raise ValueError(f"signing keys: active_kid {active!r} is not among the keys")
    return KeySet(active_kid=active, secrets_by_kid=secrets_by_kid)


def generate_signing_keys_document(kid: str) -> dict[str, Any]:
    return {"active_kid": kid, "keys": [{"kid": kid, "secret": secrets.token_urlsafe(48)}]}


class SigningKeys:
    """The accepted signing keys, re-read when their file changes."""

    def __init__(self, path: Path) -> None:
        self._file = WatchedYamlFile(path, _parse_keys)

    def current(self) -> KeySet:
        return self._file.get()


class TokenService:
    def __init__(self, keys: SigningKeys, *, issuer: str, audience: str, ttl_s: int) -> None:
        self._keys = keys
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = ttl_s

    def issue(self, subject: str, role: str, *, now: float | None = None, ttl_s: int | None = None) -> str:
        key_set = self._keys.current()
        issued_at = int(now if now is not None else time.time())
        claims = {
            "sub": subject,
            "role": role,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + (ttl_s or self.ttl_s),
            "iss": self.issuer,
            "aud": self.audience,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(
            claims,
            key_set.secrets_by_kid[key_set.active_kid],
            algorithm=ALGORITHM,
            headers={"kid": key_set.active_kid},
        )

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or TokenError saying why it is refused."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed token") from None
        if header.get("alg") != ALGORITHM:
            raise TokenError(f"token algorithm {header.get('alg')!r} is not accepted")
        secret = self._keys.current().secrets_by_kid.get(str(header.get("kid")))
        if secret is None:
            raise TokenError("token signed with an unknown key")
        try:
            return jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=_LEEWAY_S,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token has expired") from None
        except jwt.InvalidAudienceError:
            raise TokenError("token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise TokenError("token is from another issuer") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("token is not valid yet") from None
        except jwt.InvalidSignatureError:
            raise TokenError("token signature does not verify") from None
        except jwt.MissingRequiredClaimError as error:
            raise TokenError(f"token lacks the {error.claim!r} claim") from None
        except jwt.PyJWTError:
            raise TokenError("invalid token") from None
