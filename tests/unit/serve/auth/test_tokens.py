"""Access tokens: claims, key rotation by kid, and every way a token must be refused."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jwt
import pytest
import yaml

from lab_llm.auth import SigningKeys, TokenError, TokenService

SECRET_1 = "first-signing-secret-with-enough-bytes-0001"
SECRET_2 = "second-signing-secret-with-enough-bytes-002"


def write_keys(path: Path, active: str, keys: dict[str, str]) -> None:
    path.write_text(yaml.safe_dump({"active_kid": active, "keys": [{"kid": k, "secret": s} for k, s in keys.items()]}))


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.yaml"
    write_keys(path, "k1", {"k1": SECRET_1})
    return path


@pytest.fixture
def service(keys_file: Path) -> TokenService:
    return TokenService(SigningKeys(keys_file), issuer="lab-llm", audience="lab-llm", ttl_s=600)


def test_issued_token_carries_every_claim_and_kid(service: TokenService) -> None:
    token = service.issue("alice", "user")
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "kid": "k1", "typ": "JWT"}
    claims = service.verify(token)
    assert claims["sub"] == "alice" and claims["role"] == "user"
    assert claims["iss"] == "lab-llm" and claims["aud"] == "lab-llm"
    assert claims["exp"] - claims["iat"] == 600 and claims["nbf"] == claims["iat"]
    assert len(claims["jti"]) == 32


def test_rotation_accepts_old_and_new_keys_without_restart(service: TokenService, keys_file: Path) -> None:
    old_token = service.issue("alice", "user")
    write_keys(keys_file, "k2", {"k2": SECRET_2, "k1": SECRET_1})
    new_token = service.issue("bob", "admin")
    assert jwt.get_unverified_header(new_token)["kid"] == "k2"
    assert service.verify(old_token)["sub"] == "alice"
    assert service.verify(new_token)["sub"] == "bob"
    # Retiring k1 refuses its tokens from then on.
    write_keys(keys_file, "k2", {"k2": SECRET_2})
    with pytest.raises(TokenError, match="unknown key"):
        service.verify(old_token)


def test_expired_token_is_refused(service: TokenService) -> None:
    token = service.issue("alice", "user", now=time.time() - 3600, ttl_s=60)
    with pytest.raises(TokenError, match="expired"):
        service.verify(token)


def test_token_for_another_audience_is_refused(keys_file: Path, service: TokenService) -> None:
    other = TokenService(SigningKeys(keys_file), issuer="lab-llm", audience="another-api", ttl_s=600)
    with pytest.raises(TokenError, match="audience"):
        service.verify(other.issue("alice", "user"))


def test_token_from_another_issuer_is_refused(keys_file: Path, service: TokenService) -> None:
    other = TokenService(SigningKeys(keys_file), issuer="someone-else", audience="lab-llm", ttl_s=600)
    with pytest.raises(TokenError, match="issuer"):
        service.verify(other.issue("alice", "user"))


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_tampered_payload_fails_the_signature(service: TokenService) -> None:
    header, payload, signature = service.issue("alice", "user").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    with pytest.raises(TokenError, match="signature"):
        service.verify(f"{header}.{_b64(claims)}.{signature}")


def test_alg_none_is_refused(service: TokenService) -> None:
    claims = jwt.decode(service.issue("alice", "admin"), options={"verify_signature": False})
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': 'k1'})}.{_b64(claims)}."
    with pytest.raises(TokenError, match="algorithm 'none'"):
        service.verify(unsigned)


def test_other_algorithm_with_the_same_secret_is_refused(service: TokenService) -> None:
    claims = jwt.decode(service.issue("alice", "admin"), options={"verify_signature": False})
    forged = jwt.encode(claims, SECRET_1, algorithm="HS512", headers={"kid": "k1"})
    with pytest.raises(TokenError, match="HS512"):
        service.verify(forged)


def test_missing_claim_is_refused(service: TokenService) -> None:
    now = int(time.time())
    claims = {"sub": "alice", "iat": now, "nbf": now, "exp": now + 60, "iss": "lab-llm", "aud": "lab-llm"}
    token = jwt.encode(claims, SECRET_1, algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(TokenError, match="'role'"):
        service.verify(token)


def test_garbage_is_malformed(service: TokenService) -> None:
    with pytest.raises(TokenError, match="malformed"):
        service.verify("not-a-jwt")


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"keys": []}, "non-empty"),
        ({"keys": [{"kid": "k1", "secret": "short"}]}, "shorter than 32 bytes"),
        ({"active_kid": "k9", "keys": [{"kid": "k1", "secret": SECRET_1}]}, "active_kid 'k9'"),
    ],
)
def test_bad_keys_file_is_named(tmp_path: Path, document: dict, problem: str) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ValueError, match=problem):
        SigningKeys(path).current()
