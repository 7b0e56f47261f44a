"""Users (argon2id password hashes) and API keys (SHA-256 of high-entropy keys) in one YAML file.

The file may be mounted from a Kubernetes Secret (read-only; the CLI writes it) or live on a volume the
app can write (then the admin API creates and revokes keys). Every process re-reads it when it changes.

A revoked key leaves a record of its digest (`revoked_api_keys`), so the same key is never stored again and copies
of the store kept on several nodes merge without reviving it: API keys and revocations only ever grow (a
two-phase set), so any two copies merge to the same result in any order (`merge_api_keys`).
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from lab_llm.auth.watched_file import WatchedYamlFile, private_yaml_text, write_private_yaml

API_KEY_PREFIX = "sk-lab-"
_MIN_IMPORTED_KEY_LENGTH = 32
_password_hasher = PasswordHasher()  # argon2id with the library's RFC 9106 low-memory profile
# Verified against when a user does not exist, so a login takes as long for unknown users as for known ones.
_DUMMY_HASH = _password_hasher.hash(secrets.token_urlsafe(16))


class StoreError(ValueError):
    """The store file or a change to it is not valid."""


class ConflictError(StoreError):
    """The change collides with what is stored (a key name or key already in use)."""


class RevokedKeyError(ConflictError):
    """The given key was revoked; a revoked key is never stored again."""

    def __init__(self, name: str, revoked: RevokedApiKey) -> None:
        super().__init__(
            f"API key {name!r}: this key was revoked at {revoked.revoked_at} (as {revoked.name!r}) and is never "
            "accepted again; issue a new key"
        )
        self.revoked = revoked


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
class RevokedApiKey:
    """What is kept of a revoked key: its digest (so it is refused if given again), id, name and when."""

    id: str
    name: str
    sha256: str
    revoked_at: str


@dataclass(frozen=True)
class StoreContent:
    users: dict[str, User]
    api_keys_by_digest: dict[str, ApiKey]
    revoked_by_digest: dict[str, RevokedApiKey] = field(default_factory=dict)


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise StoreError("password: must be at least 8 characters")
    return _password_hasher.hash(password)


def digest_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def _kind(value: object) -> str:
    """What a YAML value is, for an error message (never the value: a store holds password hashes)."""
    kinds = {list: "a list", dict: "a mapping", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return kinds.get(type(value), type(value).__name__)


def _parse(raw: object) -> StoreContent:
    if not isinstance(raw, dict):
        raise StoreError("store: the top level must be a mapping with `users` and `api_keys`")
    raw_users = raw.get("users") or {}
    if not isinstance(raw_users, dict):
        raise StoreError(
            f"store: `users` must be a mapping of user name to {{password_hash, role}}, not {_kind(raw_users)}"
        )
    for section in ("api_keys", "revoked_api_keys"):
        if not isinstance(raw.get(section) or [], list):
            raise StoreError(f"store: `{section}` must be a list of mappings, not {_kind(raw[section])}")
    users: dict[str, User] = {}
    for name, entry in raw_users.items():
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
        if not isinstance(entry, dict):
            raise StoreError("store: every entry of `api_keys` must be a mapping")
        try:
            key = ApiKey(
                **{attribute: str(entry[attribute]) for attribute in ("id", "name", "role", "sha256", "created_at")}
            )
        except (KeyError, TypeError):
            raise StoreError(f"store: API key entry {str(entry.get('id', '?'))!r} is incomplete") from None
        keys[key.sha256] = key
    revoked: dict[str, RevokedApiKey] = {}
    for entry in raw.get("revoked_api_keys") or []:
        if not isinstance(entry, dict):
            raise StoreError("store: every entry of `revoked_api_keys` must be a mapping")
        try:
            gone = RevokedApiKey(
                **{attribute: str(entry[attribute]) for attribute in ("id", "name", "sha256", "revoked_at")}
            )
        except (KeyError, TypeError):
            raise StoreError(f"store: revoked API key entry {str(entry.get('id', '?'))!r} is incomplete") from None
        revoked[gone.sha256] = gone
    return StoreContent(users=users, api_keys_by_digest=keys, revoked_by_digest=revoked)


def _serialise(content: StoreContent) -> dict[str, Any]:
    document: dict[str, Any] = {
        "users": {
            user.name: {"password_hash": user.password_hash, "role": user.role, "disabled": user.disabled}
            for user in sorted(content.users.values(), key=lambda u: u.name)
        },
        "api_keys": [asdict(key) for key in sorted(content.api_keys_by_digest.values(), key=lambda k: k.id)],
    }
    # Only when there is one, so a store that never revoked a key keeps its bytes (and its copies compare equal).
    if content.revoked_by_digest:
        document["revoked_api_keys"] = [
            asdict(gone) for gone in sorted(content.revoked_by_digest.values(), key=lambda k: (k.revoked_at, k.id))
        ]
    return document


def _earliest(*records: RevokedApiKey) -> RevokedApiKey:
    return min(records, key=lambda gone: (gone.revoked_at, gone.id, gone.name))


def unique_key_names(keys: Mapping[str, ApiKey]) -> dict[str, ApiKey]:
    """Key names made unique again after a merge: of keys sharing a name, the one created first (then the lower id)
    keeps it; each other one is kept, still valid, as `NAME@ID` (its id makes the name unique). Keys by digest."""
    by_name: dict[str, list[ApiKey]] = {}
    for key in keys.values():
        by_name.setdefault(key.name, []).append(key)
    renamed = dict(keys)
    for name, holders in by_name.items():
        for later in sorted(holders, key=lambda key: (key.created_at, key.id))[1:]:
            renamed[later.sha256] = replace(later, name=f"{name}@{later.id}")
    return renamed


def merge_api_keys(base: StoreContent, *copies: StoreContent) -> StoreContent:
    """`base` with the API keys and revocations of other copies of the same store.

    Users: as `base` has them (only the CLI changes users, where the store is made); when `base` has no user at all
    (its file was lost), every user of the copies, a user the copies disagree on taken disabled if any copy disabled
    it, then by the lower (role, password hash). A key is kept when any copy holds it and no copy revoked it;
    revocations are all kept, each with its earliest `revoked_at`. Key names stay unique (`unique_key_names`).
    The result does not depend on the order of the copies, and merging a result again changes nothing.
    """
    revoked = dict(base.revoked_by_digest)
    keys = dict(base.api_keys_by_digest)
    users = dict(base.users)
    for copy in copies:
        for digest, gone in copy.revoked_by_digest.items():
            revoked[digest] = _earliest(gone, revoked[digest]) if digest in revoked else gone
        for digest, key in copy.api_keys_by_digest.items():
            keys.setdefault(digest, key)
    if not base.users:
        for copy in copies:
            for name, user in copy.users.items():
                known = users.get(name)
                if known is None or (not user.disabled, user.role, user.password_hash) < (
                    not known.disabled,
                    known.role,
                    known.password_hash,
                ):
                    users[name] = user
    return replace(
        base,
        users=users,
        api_keys_by_digest=unique_key_names({digest: key for digest, key in keys.items() if digest not in revoked}),
        revoked_by_digest=revoked,
    )


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

    def _read(self) -> StoreContent:
        """The file as it is now (not the cached copy): under the lock, what a change starts from."""
        if not self.path.exists():
            return StoreContent(users={}, api_keys_by_digest={})
        return _parse(yaml.safe_load(self.path.read_text()) or {})

    def _update(self, change: Callable[[StoreContent], StoreContent]) -> None:
        """Apply `change` to the file as read under the lock; it may raise to refuse (then nothing is written)."""
        with self._locked():
            write_private_yaml(self.path, _serialise(change(self._read())))

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
            return replace(content, users=users)

        self._update(change)
        return True

    def remove_user(self, name: str) -> bool:
        if name not in self.content().users:
            return False

        def change(content: StoreContent) -> StoreContent:
            return replace(content, users={n: u for n, u in content.users.items() if n != name})

        self._update(change)
        return True

    def add_api_key(self, name: str, role: str, key: str | None = None) -> tuple[ApiKey, str, bool]:
        """Store a key (a new random one unless `key` is given). Returns (record, key, created)."""
        self._check_role(role)
        if key is not None and len(key) < _MIN_IMPORTED_KEY_LENGTH:
            raise StoreError(f"API key {name!r}: a given key must be at least {_MIN_IMPORTED_KEY_LENGTH} characters")
        key = key or new_api_key()
        digest = digest_api_key(key)
        record = ApiKey(
            id="key_" + secrets.token_hex(6),
            name=name,
            role=role,
            sha256=digest,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )

        # Every check reads the file under the lock, so two processes creating the same name cannot both succeed.
        with self._locked():
            content = self._read()
            revoked = content.revoked_by_digest.get(digest)
            if revoked is not None:
                raise RevokedKeyError(name, revoked)
            existing = content.api_keys_by_digest.get(digest)
            if existing is not None:
                if existing.name != name or existing.role != role:
                    raise ConflictError(f"API key {name!r}: this key is already stored as {existing.name!r}")
                return existing, key, False
            if any(stored.name == name for stored in content.api_keys_by_digest.values()):
                raise ConflictError(f"API key {name!r} exists already; revoke it first or choose another name")
            added = replace(content, api_keys_by_digest={**content.api_keys_by_digest, digest: record})
            write_private_yaml(self.path, _serialise(added))
        return record, key, True

    def revoke_api_key(self, id_or_name: str) -> bool:
        if not any(id_or_name in (key.id, key.name) for key in self.api_keys()):
            return False

        revoked_at = datetime.now(UTC).isoformat(timespec="seconds")

        def change(content: StoreContent) -> StoreContent:
            kept, revoked = {}, dict(content.revoked_by_digest)
            for digest, key in content.api_keys_by_digest.items():
                if id_or_name in (key.id, key.name):
                    revoked[digest] = RevokedApiKey(id=key.id, name=key.name, sha256=digest, revoked_at=revoked_at)
                else:
                    kept[digest] = key
            return replace(content, api_keys_by_digest=kept, revoked_by_digest=revoked)

        self._update(change)
        return True

    def merge_api_keys_from(
        self, copies: Mapping[str, object] | list[object], *, dry_run: bool = False
    ) -> tuple[bool, str]:
        """Merge other copies of this store (parsed YAML documents, by a label such as the node's name, or in a list)
        into it (`merge_api_keys`). Returns whether this file changes (or would, with `dry_run`) and the merged
        store's text, as this store writes it. A copy that is not a valid store raises StoreError naming its label
        (or position), before anything is written; a dry run writes nothing (no directory, no lock file)."""
        labelled = copies.items() if isinstance(copies, Mapping) else enumerate(copies)
        parsed = []
        for label, document in labelled:
            try:
                parsed.append(_parse(document or {}))
            except StoreError as error:
                raise StoreError(f"copy {label}: {error}") from None
        if dry_run:  # the file is replaced atomically, so a read without the lock sees a whole store
            return self._merged(parsed)[:2]
        with self._locked():
            changed, text, merged = self._merged(parsed)
            if changed:
                write_private_yaml(self.path, _serialise(merged))
            return changed, text

    def _merged(self, copies: list[StoreContent]) -> tuple[bool, str, StoreContent]:
        base = self._read()
        merged = merge_api_keys(base, *copies)
        return merged != base, private_yaml_text(_serialise(merged)), merged
