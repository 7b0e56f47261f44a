"""The CLI end to end on files: users, keys, signing keys, tokens, check; secrets never echoed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lab_llm.auth import AuthStore, SigningKeys, TokenService
from lab_llm.cli import app
from tests.conftest import REPO_ROOT

runner = CliRunner()
TINY_CONFIG = REPO_ROOT / "tests" / "fixtures" / "models" / "tiny-llama.json"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(TINY_CONFIG, model / "config.json")
    path = tmp_path / "app.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "engine": {"model": str(model)},
                "auth": {"store_path": str(tmp_path / "store.yaml"), "signing_keys_path": str(tmp_path / "keys.yaml")},
            }
        )
    )
    return path


def invoke(*args: str, stdin: str | None = None):
    return runner.invoke(app, list(args), input=stdin)


def test_user_add_is_idempotent_and_never_prints_the_password(config_file: Path) -> None:
    first = invoke(
        "users",
        "add",
        "alice",
        "-c",
        str(config_file),
        "--role",
        "admin",
        "--password-stdin",
        "--json",
        stdin="s3cret-pass\n",
    )
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["changed"] is True
    again = invoke(
        "users",
        "add",
        "alice",
        "-c",
        str(config_file),
        "--role",
        "admin",
        "--password-stdin",
        "--json",
        stdin="s3cret-pass\n",
    )
    assert json.loads(again.stdout)["changed"] is False
    assert "s3cret-pass" not in first.output + again.output
    listed = invoke("users", "list", "-c", str(config_file), "--json")
    assert json.loads(listed.stdout)["users"] == [{"name": "alice", "role": "admin", "disabled": False}]


def test_key_create_prints_the_key_once_and_revoke_removes_it(config_file: Path, tmp_path: Path) -> None:
    created = invoke("keys", "create", "openwebui", "-c", str(config_file), "--json")
    assert created.exit_code == 0, created.output
    payload = json.loads(created.stdout)
    assert payload["key"].startswith("sk-lab-")
    assert AuthStore(tmp_path / "store.yaml").find_api_key(payload["key"]) is not None
    listed = invoke("keys", "list", "-c", str(config_file))
    assert payload["key"] not in listed.stdout and payload["id"] in listed.stdout
    assert invoke("keys", "revoke", payload["id"], "-c", str(config_file)).exit_code == 0
    assert AuthStore(tmp_path / "store.yaml").find_api_key(payload["key"]) is None


def test_signing_keys_init_then_rotate_keeps_old_tokens_valid(config_file: Path, tmp_path: Path) -> None:
    assert json.loads(invoke("signing-keys", "init", "-c", str(config_file), "--json").stdout)["changed"] is True
    assert json.loads(invoke("signing-keys", "init", "-c", str(config_file), "--json").stdout)["changed"] is False
    invoke("users", "add", "bob", "-c", str(config_file), "--password-stdin", stdin="battery-staple\n")
    old_token = invoke("token", "-c", str(config_file), "--user", "bob", "--password-stdin", stdin="battery-staple\n")
    assert old_token.exit_code == 0, old_token.output
    rotated = invoke("signing-keys", "rotate", "-c", str(config_file), "--kid", "k2")
    assert "now signing with k2; accepting k2, k1" in rotated.stdout
    service = TokenService(SigningKeys(tmp_path / "keys.yaml"), issuer="lab-llm", audience="lab-llm", ttl_s=60)
    assert service.verify(old_token.stdout.strip())["sub"] == "bob"


def test_token_refuses_a_wrong_password(config_file: Path) -> None:
    invoke("signing-keys", "init", "-c", str(config_file))
    invoke("users", "add", "bob", "-c", str(config_file), "--password-stdin", stdin="battery-staple\n")
    refused = invoke("token", "-c", str(config_file), "--user", "bob", "--password-stdin", stdin="wrong-one\n")
    assert refused.exit_code == 2
    assert "incorrect username or password" in refused.output


def test_check_reports_missing_files_and_passes_when_complete(config_file: Path) -> None:
    missing = invoke("check", "-c", str(config_file))
    assert missing.exit_code == 2
    assert "signing_keys_path" in missing.output
    invoke("signing-keys", "init", "-c", str(config_file))
    assert invoke("check", "-c", str(config_file)).exit_code == 0


def test_check_refuses_a_layout_the_model_or_the_platform_cannot_run(config_file: Path) -> None:
    invoke("signing-keys", "init", "-c", str(config_file))
    config = yaml.safe_load(config_file.read_text())
    config["engine"]["tensor_parallel_size"] = 3
    config_file.write_text(yaml.safe_dump(config))
    refused = invoke("check", "-c", str(config_file))
    assert refused.exit_code == 2
    assert "engine.tensor_parallel_size: TP=3 does not divide the 4 attention heads" in refused.output
    config["engine"] |= {"tensor_parallel_size": 1, "pipeline_parallel_size": 2, "enforce_eager": True}
    config["serving"] = {"accelerator": "cpu"}
    config_file.write_text(yaml.safe_dump(config))
    refused = invoke("check", "-c", str(config_file))
    assert refused.exit_code == 2
    assert "engine.enforce_eager: vLLM's CPU build crashes" in refused.output
    config["engine"]["enforce_eager"] = False
    config_file.write_text(yaml.safe_dump(config))
    passed = invoke("check", "-c", str(config_file))
    assert passed.exit_code == 0, passed.output
    assert "TP=1, PP=2, cpu" in passed.output


def test_bad_config_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"engine": {"model": "m", "tensor_parallel_size": 0}, "auth": {}}))
    result = invoke("check", "-c", str(path))
    assert result.exit_code == 2
    assert "engine.tensor_parallel_size" in result.output


def test_a_revoked_key_given_again_is_refused_with_status_3(config_file: Path) -> None:
    given = "sk-lab-" + "v" * 40
    args = ("keys", "create", "from-vault", "-c", str(config_file), "--key-stdin", "--json")
    assert json.loads(invoke(*args, stdin=given + "\n").stdout)["changed"] is True
    assert invoke("keys", "revoke", "from-vault", "-c", str(config_file)).exit_code == 0
    again = invoke(*args, stdin=given + "\n")
    assert again.exit_code == 3
    payload = json.loads(again.stdout)
    assert payload["changed"] is False and payload["revoked"] is True and payload["name"] == "from-vault"
    assert given not in again.output


def test_keys_merge_takes_other_copies_from_stdin(config_file: Path, tmp_path: Path) -> None:
    invoke(
        "users", "add", "admin", "-c", str(config_file), "--role", "admin", "--password-stdin", stdin="s3cret-pass\n"
    )
    other = tmp_path / "gate.yaml"
    other.write_text((tmp_path / "store.yaml").read_text())
    _, gate_key, _ = AuthStore(other).add_api_key("made-at-gate", "user")
    copies = json.dumps([other.read_text()])
    dry = invoke("keys", "merge", "-c", str(config_file), "--dry-run", "--json", stdin=copies)
    assert json.loads(dry.stdout) == {"changed": True}
    assert AuthStore(tmp_path / "store.yaml").find_api_key(gate_key) is None
    merged = invoke("keys", "merge", "-c", str(config_file), "--json", "--print-merged", stdin=copies)
    assert json.loads(merged.stdout) == {"changed": True, "store": (tmp_path / "store.yaml").read_text()}
    assert AuthStore(tmp_path / "store.yaml").find_api_key(gate_key) is not None
    assert json.loads(invoke("keys", "merge", "-c", str(config_file), "--json", stdin=copies).stdout) == {
        "changed": False
    }
    refused = invoke("keys", "merge", "-c", str(config_file), "--json", stdin='"not a list"')
    assert refused.exit_code == 2 and "not a JSON object (label: store text) or list" in refused.output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("users: {admin: {role: admin, password_hash: '$argon2id$secret-hash'}\n  bad: [", "copy w2: not valid YAML"),
        ("users: [a, b]\n", "copy w2: store: `users` must be a mapping of user name to {password_hash, role}"),
        ("users: 5\n", "copy w2: store: `users` must be a mapping"),
        ("api_keys: 5\n", "copy w2: store: `api_keys` must be a list of mappings, not a number"),
        ("revoked_api_keys: {a: 1}\n", "copy w2: store: `revoked_api_keys` must be a list of mappings, not a mapping"),
    ],
)
def test_keys_merge_names_the_copy_and_section_of_a_malformed_store(
    config_file: Path, tmp_path: Path, text: str, expected: str
) -> None:
    """A bad copy is a clear error naming its node (the JSON object's label), never a traceback nor its text."""
    refused = invoke("keys", "merge", "-c", str(config_file), stdin=json.dumps({"w1": "users: {}\n", "w2": text}))
    assert refused.exit_code == 2, refused.output
    assert expected in refused.output
    assert "secret-hash" not in refused.output and "Traceback" not in refused.output


def test_keys_merge_dry_run_writes_nothing(tmp_path: Path) -> None:
    store_dir = tmp_path / "absent"
    config = tmp_path / "app.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "engine": {"model": "/m"},
                "auth": {"store_path": str(store_dir / "store.yaml"), "signing_keys_path": str(tmp_path / "k.yaml")},
            }
        )
    )
    other = tmp_path / "gate.yaml"
    AuthStore(other).add_api_key("made-at-gate", "user")
    result = invoke("keys", "merge", "-c", str(config), "--dry-run", "--json", stdin=json.dumps([other.read_text()]))
    assert json.loads(result.stdout) == {"changed": True}
    assert not store_dir.exists()


def test_check_reads_the_configuration_from_stdin_before_it_is_written(config_file: Path) -> None:
    document = yaml.safe_load(config_file.read_text())
    assert invoke("check", "-c", "-", stdin=yaml.safe_dump(document)).exit_code == 2  # no signing keys yet
    ok = invoke("check", "--no-signing-keys", "-c", "-", stdin=yaml.safe_dump(document))
    assert ok.exit_code == 0, ok.output
    document["engine"]["env"] = {"VLLM_HOST_IP": "10.0.0.5"}
    refused = invoke("check", "--no-signing-keys", "-c", "-", stdin=yaml.safe_dump(document))
    assert refused.exit_code == 2 and "engine.env" in refused.output, refused.output


def test_an_unexpected_error_never_prints_local_variables(config_file: Path) -> None:
    """Ansible shows the CLI's stderr (a refused merge): a traceback, as typer prints it with rich, must not carry
    local variables (the store's text, a password)."""
    script = (
        "import sys\n"
        "from lab_llm.auth.store import AuthStore\n"
        "def explode(self, copies, *, dry_run=False):\n"
        "    raise RuntimeError('boom')\n"
        "AuthStore.merge_api_keys_from = explode\n"
        "from lab_llm.cli import app\n"
        "sys.argv = ['lab-llm', 'keys', 'merge', '-c', sys.argv[1]]\n"
        "app()\n"
    )
    text = "users: {admin: {role: admin, password_hash: $argon2id$local-secret}}\n"
    result = subprocess.run(
        [sys.executable, "-c", script, str(config_file)],
        input=json.dumps([text]),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0 and "boom" in result.stderr, result.stderr[-2000:]
    assert "local-secret" not in result.stderr + result.stdout
