"""Users (argon2id password hashes) and API keys (SHA-256 of high-entropy keys) in one YAML file.

The file may be mounted from a Kubernetes Secret (read-only; the CLI writes it) or live on a volume the
app can write (then the admin API creates and revokes keys). Every process re-reads it when it changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from lab_llm.auth.watched_file import WatchedYamlFile, write_private_yaml

API_KEY_PREFIX = "sk-lab-"
_MIN_IMPORTED_KEY_LENGTH = 32
_password_hasher = PasswordHasher()  # argon2id with the library's RFC 9106 low-memory profile
# Verified against when a user does not exist, so a login takes as long for unknown users as for known ones.
_DUMMY_HASH = _password_hasher.hash(secrets.token_urlsafe(16))


class StoreError(ValueError):
    """The store file or a change to it is not valid."""


class ConflictError(StoreError):
    """The change collides with what is stored (a key name or key already in use)."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str
    disabled: bool = False


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    role: str
    sha256: str
    created_at: str


@dataclass(frozen=True)
class StoreContent:
    users: dict[str, User]
    api_keys_by_digest: dict[str, ApiKey]


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise StoreError("password: must be at least 8 characters")
    return _password_hasher.hash(password)


def digest_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def _parse(raw: object) -> StoreContent:
    if not isinstance(raw, dict):
        raise StoreError("store: the top level must be a mapping with `users` and `api_keys`")
    users: dict[str, User] = {}
    for name, entry in (raw.get("users") or {}).items():
        if not isinstance(entry, dict) or "password_hash" not in entry or "role" not in entry:
            raise StoreError(f"store: user {name!r} needs `password_hash` and `role`")
        users[str(name)] = User(
            name=str(name),
            role=str(entry["role"]),
            password_hash=str(entry["password_hash"]),
            disabled=bool(entry.get("disabled", False)),
        )
    keys: dict[str, ApiKey] = {}
    for entry in raw.get("api_keys") or []:
        try:
            key = ApiKey(**{field: str(entry[field]) for field in ("id", "name", "role", "sha256", "created_at")})
        except (KeyError, TypeError):
            raise StoreError(f"store: API key entry {entry.get('id', '?')!r} is incomplete") from None
        keys[key.sha256] = key
    return StoreContent(users=users, api_keys_by_digest=keys)


def _serialise(content: StoreContent) -> dict[str, Any]:
    return {
        "users": {
            user.name: {"password_hash": user.password_hash, "role": user.role, "disabled": user.disabled}
            for user in sorted(content.users.values(), key=lambda u: u.name)
        },
        "api_keys": [asdict(key) for key in sorted(content.api_keys_by_digest.values(), key=lambda k: k.id)],
    }


class AuthStore:
    """Reads and changes the store file; readers see changes made by any process."""

    def __init__(self, path: Path, *, known_roles: set[str] | None = None) -> None:
        self.path = path
        self._known_roles = known_roles
        self._file = WatchedYamlFile(path, _parse)

    # Reading -------------------------------------------------------------------------------------------
    def content(self) -> StoreContent:
        if not self.path.exists():
            return StoreContent(users={}, api_keys_by_digest={})
        return self._file.get()

    def verify_password(self, username: str, password: str) -> User | None:
        """The user if the password is right and the user enabled; None otherwise, in about the same time."""
        user = self.content().users.get(username)
        try:
            _password_hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if user is None or user.disabled:
            return None
        return user

    def find_api_key(self, key: str) -> ApiKey | None:
        digest = digest_api_key(key)
        found = self.content().api_keys_by_digest.get(digest)
        # The dict lookup already matched; compare_digest keeps the final check constant-time all the same.
        if found is not None and hmac.compare_digest(found.sha256, digest):
            return found
        return None

    def api_keys(self) -> list[ApiKey]:
        return sorted(self.content().api_keys_by_digest.values(), key=lambda k: k.id)

    # Changing ------------------------------------------------------------------------------------------
    def _check_role(self, role: str) -> None:
        if self._known_roles is not None and role not in self._known_roles:
            raise StoreError(f"role {role!r} is not configured; known roles: {', '.join(sorted(self._known_roles))}")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _update(self, change: Callable[[StoreContent], StoreContent]) -> None:
        with self._locked():
            current = _parse(yaml.safe_load(self.path.read_text()) or {}) if self.path.exists() else None
            updated = change(current or StoreContent(users={}, api_keys_by_digest={}))
            write_private_yaml(self.path, _serialise(updated))

    def set_user(self, name: str, password: str, role: str) -> bool:
        """Create or update a user. Returns False when it already had this role and password."""
        self._check_role(role)
        existing = self.content().users.get(name)
        if existing and existing.role == role and not existing.disabled and self.verify_password(name, password):
            return False
        password_hash = hash_password(password)

        def change(content: StoreContent) -> StoreContent:
            users = dict(content.users)
            users[name] = User(name=name, role=role, password_hash=password_hash)
            return StoreContent(users=users, api_keys_by_digest=content.api_keys_by_digest)

        self._update(change)
        return True

    def remove_user(self, name: str) -> bool:
        if name not in self.content().users:
            return False

        def change(content: StoreContent) -> StoreContent:
            return StoreContent(
                users={n: u for n, u in content.users.items() if n != name},
                api_keys_by_digest=content.api_keys_by_digest,
            )

        self._update(change)
        return True

    def add_api_key(self, name: str, role: str, key: str | None = None) -> tuple[ApiKey, str, bool]:
        """Store a key (a new random one unless `key` is given). Returns (record, key, created)."""
        self._check_role(role)
        if key is not None and len(key) < _MIN_IMPORTED_KEY_LENGTH:
            raise StoreError(f"API key {name!r}: a given key must be at least {_MIN_IMPORTED_KEY_LENGTH} characters")
        key = key or new_api_key()
        digest = digest_api_key(key)
        existing = self.content().api_keys_by_digest.get(digest)
        if existing is not None:
            if existing.name != name or existing.role != role:
                raise ConflictError(f"API key {name!r}: this key is already stored as {existing.name!r}")
            return existing, key, False
        if any(stored.name == name for stored in self.api_keys()):
            raise ConflictError(f"API key {name!r} exists already; revoke it first or choose another name")
        record = ApiKey(
            id="key_" + secrets.token_hex(6),
            name=name,
            role=role,
            sha256=digest,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )

        def change(content: StoreContent) -> StoreContent:
            return StoreContent(users=content.users, api_keys_by_digest={**content.api_keys_by_digest, digest: record})

        self._update(change)
        return record, key, True

    def revoke_api_key(self, id_or_name: str) -> bool:
        if not any(id_or_name in (key.id, key.name) for key in self.api_keys()):
            return False

        def change(content: StoreContent) -> StoreContent:
            kept = {d: k for d, k in content.api_keys_by_digest.items() if id_or_name not in (k.id, k.name)}
            return StoreContent(users=content.users, api_keys_by_digest=kept)

        self._update(change)
        return True
