"""Users and API keys in the store file: hashing, idempotent changes, reload by other processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from lab_llm.auth import AuthStore, StoreError
from lab_llm.auth.store import ConflictError, RevokedKeyError, StoreContent


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


def test_a_revoked_key_is_never_stored_again(store: AuthStore) -> None:
    given = "sk-lab-" + "r" * 40
    record, _, _ = store.add_api_key("app", "user", given)
    assert store.revoke_api_key("app") is True
    with pytest.raises(RevokedKeyError, match=r"revoked at .* never accepted again") as refused:
        store.add_api_key("app", "user", given)
    assert refused.value.revoked.id == record.id
    assert given not in str(refused.value)
    assert store.find_api_key(given) is None
    # The name is free again for a new key.
    assert store.add_api_key("app", "user")[2] is True


def test_a_store_without_revocations_keeps_its_layout(store: AuthStore) -> None:
    store.add_api_key("app", "user")
    assert "revoked_api_keys" not in yaml.safe_load(store.path.read_text())


def copy_of(store: AuthStore, path: Path) -> AuthStore:
    path.write_text(store.path.read_text())
    return AuthStore(path, known_roles={"admin", "user", "viewer"})


def test_copies_merge_keys_created_anywhere_and_never_revive_a_revoked_one(store: AuthStore, tmp_path: Path) -> None:
    """The head's copy (CLI) and a gate's copy (admin API) diverge; merging either way gives one store."""
    store.set_user("admin", "correct horse", "admin")
    declared = "sk-lab-" + "d" * 40
    store.add_api_key("declared", "user", declared)
    gate = copy_of(store, tmp_path / "gate.yaml")
    _, created_at_gate, _ = gate.add_api_key("made-at-gate", "user")
    assert gate.revoke_api_key("declared") is True
    _, created_at_head, _ = store.add_api_key("made-at-head", "user")
    gate_document = yaml.safe_load(gate.path.read_text())

    would_change, predicted = store.merge_api_keys_from([gate_document], dry_run=True)
    assert would_change is True
    assert store.find_api_key(declared) is not None  # a dry run writes nothing
    assert store.merge_api_keys_from([gate_document])[0] is True
    assert store.path.read_text() == predicted  # the dry run gives the text the merge writes
    for merged in (store, gate):
        if merged is gate:
            assert gate.merge_api_keys_from([yaml.safe_load(store.path.read_text())])[0] is True
        assert merged.find_api_key(declared) is None
        assert merged.find_api_key(created_at_gate) is not None
        assert merged.find_api_key(created_at_head) is not None
    # Both orders give the same bytes, and merging again changes nothing.
    assert store.path.read_text() == gate.path.read_text()
    assert store.merge_api_keys_from([yaml.safe_load(gate.path.read_text())])[0] is False
    with pytest.raises(RevokedKeyError):
        store.add_api_key("declared", "user", declared)


def test_users_come_from_the_copy_merged_into(store: AuthStore, tmp_path: Path) -> None:
    store.set_user("admin", "correct horse", "admin")
    gate = copy_of(store, tmp_path / "gate.yaml")
    gate.set_user("stranger", "battery staple", "admin")
    gate.remove_user("admin")
    assert store.merge_api_keys_from([yaml.safe_load(gate.path.read_text())])[0] is False
    assert set(store.content().users) == {"admin"}


def test_a_malformed_copy_is_named_and_nothing_is_written(store: AuthStore) -> None:
    store.add_api_key("app", "user")
    before = store.path.read_text()
    with pytest.raises(StoreError, match="copy 1: store: revoked API key entry 'key_1' is incomplete"):
        store.merge_api_keys_from([{}, {"revoked_api_keys": [{"id": "key_1"}]}])
    with pytest.raises(StoreError, match="copy 0: store: the top level must be a mapping"):
        store.merge_api_keys_from([["not", "a", "store"]])
    assert store.path.read_text() == before


def test_a_merge_keeps_key_names_unique_the_first_created_keeping_the_name(store: AuthStore, tmp_path: Path) -> None:
    """Two copies that each made `openwebui`: the earlier key keeps the name, the other stays valid as NAME@ID."""
    store.set_user("admin", "correct horse", "admin")
    gate = copy_of(store, tmp_path / "gate.yaml")
    _, first, _ = gate.add_api_key("openwebui", "user")
    _, second, _ = store.add_api_key("openwebui", "user")
    documents = {name: yaml.safe_load(path.read_text()) for name, path in (("gate", gate.path), ("head", store.path))}
    documents["gate"]["api_keys"][0]["created_at"] = "2026-01-01T00:00:00+00:00"  # made first
    gate.path.write_text(yaml.safe_dump(documents["gate"]))
    assert store.merge_api_keys_from({"gate": documents["gate"]})[0] is True
    assert gate.merge_api_keys_from([documents["head"]])[0] is True
    assert store.path.read_text() == gate.path.read_text()  # either direction, the same store
    kept, renamed = store.find_api_key(first), store.find_api_key(second)
    assert kept is not None and kept.name == "openwebui"
    assert renamed is not None and renamed.name == f"openwebui@{renamed.id}"
    assert store.merge_api_keys_from([yaml.safe_load(gate.path.read_text())])[0] is False


def test_the_name_check_reads_the_file_under_the_lock(store: AuthStore, tmp_path: Path) -> None:
    """A process whose view is stale (another one just made the name) is refused, not given a duplicate."""
    stale = AuthStore(store.path, known_roles={"user"})
    stale.content = lambda: StoreContent(users={}, api_keys_by_digest={})  # type: ignore[method-assign]
    store.add_api_key("openwebui", "user")
    with pytest.raises(ConflictError, match="exists already"):
        stale.add_api_key("openwebui", "user")
    assert [key.name for key in store.api_keys()] == ["openwebui"]


def test_users_come_from_the_copies_when_the_head_lost_its_store(store: AuthStore, tmp_path: Path) -> None:
    store.set_user("admin", "correct horse", "admin")
    gate = copy_of(store, tmp_path / "gate.yaml")
    other = copy_of(store, tmp_path / "other.yaml")
    other.set_user("bob", "battery staple", "user")
    store.path.unlink()
    head = AuthStore(store.path)
    assert head.merge_api_keys_from([yaml.safe_load(p.read_text()) for p in (gate.path, other.path)])[0] is True
    assert set(head.content().users) == {"admin", "bob"}
    assert head.verify_password("admin", "correct horse") is not None


def test_the_earliest_revocation_is_kept_whatever_the_order(store: AuthStore, tmp_path: Path) -> None:
    store.add_api_key("app", "user")
    early, late = copy_of(store, tmp_path / "early.yaml"), copy_of(store, tmp_path / "late.yaml")
    for copy, when in ((early, "2026-01-01T00:00:00+00:00"), (late, "2026-02-01T00:00:00+00:00")):
        copy.revoke_api_key("app")
        document = yaml.safe_load(copy.path.read_text())
        document["revoked_api_keys"][0]["revoked_at"] = when
        copy.path.write_text(yaml.safe_dump(document))
    documents = [yaml.safe_load(copy.path.read_text()) for copy in (late, early)]
    for order in (documents, documents[::-1]):
        merged = copy_of(store, tmp_path / "merged.yaml")
        merged.merge_api_keys_from(order)
        assert [gone.revoked_at for gone in merged.content().revoked_by_digest.values()] == [
            "2026-01-01T00:00:00+00:00"
        ]


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"users": ["a", "b"]}, "`users` must be a mapping of user name to {password_hash, role}, not a list"),
        ({"users": 5}, "`users` must be a mapping .* not a number"),
        ({"api_keys": 5}, "`api_keys` must be a list of mappings, not a number"),
        ({"revoked_api_keys": "x"}, "`revoked_api_keys` must be a list of mappings, not a string"),
    ],
)
def test_a_malformed_section_is_a_store_error(store: AuthStore, document: dict, expected: str) -> None:
    with pytest.raises(StoreError, match=f"copy n1: store: {expected}"):
        store.merge_api_keys_from({"n1": document})
