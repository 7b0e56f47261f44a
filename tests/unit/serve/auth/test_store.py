"""Users and API keys in the store file: hashing, idempotent changes, reload by other processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from lab_llm.auth import AuthStore, StoreError
from lab_llm.auth.store import ConflictError


@pytest.fixture
def store(tmp_path: Path) -> AuthStore:
    return AuthStore(tmp_path / "store.yaml", known_roles={"admin", "user", "viewer"})


def test_passwords_are_stored_as_argon2id_and_verified(store: AuthStore) -> None:
    assert store.set_user("alice", "correct horse", "user") is True
    raw = yaml.safe_load(store.path.read_text())
    assert raw["users"]["alice"]["password_hash"].startswith("$argon2id$")
    assert "correct horse" not in store.path.read_text()
    assert store.verify_password("alice", "correct horse").role == "user"
    assert store.verify_password("alice", "wrong horse") is None
    assert store.verify_password("nobody", "correct horse") is None
    assert os.stat(store.path).st_mode & 0o777 == 0o600


def test_setting_the_same_user_again_changes_nothing(store: AuthStore) -> None:
    store.set_user("alice", "correct horse", "user")
    before = store.path.read_text()
    assert store.set_user("alice", "correct horse", "user") is False
    assert store.path.read_text() == before
    assert store.set_user("alice", "correct horse", "admin") is True


def test_unknown_role_and_short_password_change_nothing(store: AuthStore) -> None:
    with pytest.raises(StoreError, match="role 'root' is not configured"):
        store.set_user("alice", "correct horse", "root")
    with pytest.raises(StoreError, match="at least 8"):
        store.set_user("alice", "short", "user")
    assert not store.path.exists()


def test_api_keys_are_stored_as_sha256_and_found(store: AuthStore) -> None:
    record, key, created = store.add_api_key("openwebui", "user")
    assert created and key.startswith("sk-lab-") and len(key) > 40
    assert key not in store.path.read_text()
    assert store.find_api_key(key) == record
    assert store.find_api_key(key + "x") is None


def test_given_api_key_is_idempotent_and_names_are_unique(store: AuthStore) -> None:
    given = "sk-lab-" + "a" * 40
    first = store.add_api_key("app", "user", given)
    again = store.add_api_key("app", "user", given)
    assert first[2] is True and again[2] is False and first[0] == again[0]
    with pytest.raises(ConflictError, match="exists already"):
        store.add_api_key("app", "user")
    with pytest.raises(StoreError, match="at least 32"):
        store.add_api_key("other", "user", "too-short")


def test_revoked_key_stops_working(store: AuthStore) -> None:
    record, key, _ = store.add_api_key("app", "user")
    assert store.revoke_api_key(record.id) is True
    assert store.find_api_key(key) is None
    assert store.revoke_api_key(record.id) is False


def test_changes_by_another_process_are_seen_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "store.yaml"
    reader, writer = AuthStore(path), AuthStore(path)
    assert reader.verify_password("alice", "correct horse") is None
    writer.set_user("alice", "correct horse", "user")
    assert reader.verify_password("alice", "correct horse") is not None
    _, key, _ = writer.add_api_key("app", "user")
    assert reader.find_api_key(key) is not None


def test_store_replaced_by_a_symlink_swap_is_reloaded(tmp_path: Path) -> None:
    """Kubernetes updates a mounted Secret by pointing `..data` at a new directory."""
    first, second = tmp_path / "v1", tmp_path / "v2"
    first.mkdir()
    second.mkdir()
    AuthStore(first / "store.yaml").set_user("alice", "correct horse", "user")
    AuthStore(second / "store.yaml").set_user("bob", "battery staple", "admin")
    (tmp_path / "current").symlink_to(first)
    reader = AuthStore(tmp_path / "current" / "store.yaml")
    assert reader.verify_password("alice", "correct horse") is not None
    (tmp_path / "next").symlink_to(second)
    os.replace(tmp_path / "next", tmp_path / "current")
    assert reader.verify_password("bob", "battery staple") is not None
    assert reader.verify_password("alice", "correct horse") is None


def test_malformed_store_is_named(tmp_path: Path) -> None:
    path = tmp_path / "store.yaml"
    path.write_text(yaml.safe_dump({"users": {"alice": {"role": "user"}}}))
    with pytest.raises(StoreError, match="user 'alice' needs `password_hash`"):
        AuthStore(path).verify_password("alice", "x")
