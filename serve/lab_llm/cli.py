"""`lab-llm`: manage users, API keys and signing keys; check a configuration; serve the app on a local Ray."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from lab_llm.config import AppConfig, ConfigError, load_config, model_layout_problems, parse_config
from lab_llm.plan.cli import plan_command

# No local variables in a traceback: they may hold passwords, keys or a store's text (Ansible prints stderr).
app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False)
users_app = typer.Typer(help="Users who log in with a password (OAuth2 password flow).", no_args_is_help=True)
keys_app = typer.Typer(help="Long-lived API keys for applications such as OpenWebUI.", no_args_is_help=True)
signing_app = typer.Typer(help="Keys that sign access tokens (rotate without downtime).", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(signing_app, name="signing-keys")

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", envvar="LAB_LLM_CONFIG", help="lab-llm configuration (YAML).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object (for scripts and Ansible).")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def _config(path: Path) -> AppConfig:
    """The configuration at `path`; `-` reads it from standard input."""
    try:
        if str(path) == "-":
            try:
                data = yaml.safe_load(sys.stdin.read())
            except yaml.YAMLError as error:
                raise ConfigError(f"standard input is not valid YAML: {error}") from None
            return parse_config(data, source="standard input")
        return load_config(path)
    except ConfigError as error:
        raise _fail(str(error)) from None


def _store(config: AppConfig):
    from lab_llm.auth import open_store

    return open_store(config.auth)


def _secret(prompt: str, from_stdin: bool) -> str:
    if from_stdin:
        value = sys.stdin.readline().rstrip("\n")
    else:
        value = typer.prompt(prompt, hide_input=True, confirmation_prompt=False)
    if not value:
        raise _fail(f"{prompt.lower()} is empty")
    return value


def _report(as_json: bool, payload: dict, text: str) -> None:
    typer.echo(json.dumps(payload) if as_json else text)


# Users ---------------------------------------------------------------------------------------------------
@users_app.command("add")
def users_add(
    name: str,
    config: ConfigOption,
    role: Annotated[str, typer.Option(help="One of the roles in auth.roles.")] = "user",
    password_stdin: Annotated[bool, typer.Option(help="Read the password from standard input.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a user, or set its role and password."""
    from lab_llm.auth import StoreError

    settings = _config(config)
    password = _secret("Password", password_stdin)
    try:
        changed = _store(settings).set_user(name, password, role)
    except StoreError as error:
        raise _fail(str(error)) from None
    _report(
        as_json, {"changed": changed, "user": name, "role": role}, f"user {name}: {'saved' if changed else 'unchanged'}"
    )


@users_app.command("remove")
def users_remove(name: str, config: ConfigOption, as_json: JsonOption = False) -> None:
    """Remove a user."""
    changed = _store(_config(config)).remove_user(name)
    _report(as_json, {"changed": changed, "user": name}, f"user {name}: {'removed' if changed else 'not present'}")


@users_app.command("list")
def users_list(config: ConfigOption, as_json: JsonOption = False) -> None:
    """List users and their roles."""
    users = sorted(_store(_config(config)).content().users.values(), key=lambda u: u.name)
    rows = [{"name": u.name, "role": u.role, "disabled": u.disabled} for u in users]
    _report(as_json, {"users": rows}, "\n".join(f"{r['name']}\t{r['role']}" for r in rows))


# API keys ------------------------------------------------------------------------------------------------
@keys_app.command("create")
def keys_create(
    name: str,
    config: ConfigOption,
    role: Annotated[str, typer.Option(help="Role the key acts as.")] = "user",
    key_stdin: Annotated[
        bool, typer.Option(help="Store the key given on standard input (e.g. from a vault) instead of a new one.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Create an API key and print it once (only its SHA-256 is stored).

    A given key that was revoked is refused with exit status 3 (with --json: `{"changed": false, "revoked": true,
    "name", "revoked_at"}` on standard output): a revoked key is never accepted again.
    """
    from lab_llm.auth import StoreError
    from lab_llm.auth.store import RevokedKeyError

    settings = _config(config)
    given = _secret("API key", True) if key_stdin else None
    try:
        record, key, created = _store(settings).add_api_key(name, role, given)
    except RevokedKeyError as error:
        if as_json:
            typer.echo(
                json.dumps({"changed": False, "revoked": True, "name": name, "revoked_at": error.revoked.revoked_at})
            )
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=3) from None
    except StoreError as error:
        raise _fail(str(error)) from None
    payload = {"changed": created, "id": record.id, "name": record.name, "role": record.role}
    if given is None:
        payload["key"] = key
    _report(as_json, payload, key if given is None else f"API key {name}: {'stored' if created else 'unchanged'}")


@keys_app.command("revoke")
def keys_revoke(id_or_name: str, config: ConfigOption, as_json: JsonOption = False) -> None:
    """Revoke an API key by id or name."""
    changed = _store(_config(config)).revoke_api_key(id_or_name)
    _report(as_json, {"changed": changed}, f"API key {id_or_name}: {'revoked' if changed else 'not present'}")


@keys_app.command("merge")
def keys_merge(
    config: ConfigOption,
    dry_run: Annotated[bool, typer.Option(help="Say whether the store would change; write nothing.")] = False,
    print_merged: Annotated[
        bool,
        typer.Option(
            help="With --json, also give the merged store's text (`store`: password hashes and key digests, no keys)."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Merge other copies of the store into this one: their YAML texts on standard input, as a JSON object (a label
    such as the node's name: text) or a JSON list; an error names the copy by its label (or position), never its text.

    For a store kept on several nodes (the gate's copy, changed by the admin API, and the copy the CLI writes): a key
    any copy holds is kept unless a copy revoked it; revocations are all kept; users stay as they are in this
    copy (all users of the copies when this copy has none); key names stay unique (a later key of the same name is
    renamed NAME@ID). Nothing is written when a copy is not a valid store, nor with --dry-run.
    """
    from lab_llm.auth import StoreError

    settings = _config(config)
    try:
        texts = json.loads(sys.stdin.read() or "[]")
    except ValueError:
        texts = None
    if isinstance(texts, list):
        texts = {str(index): text for index, text in enumerate(texts)}
    if not isinstance(texts, dict) or not all(isinstance(text, str) for text in texts.values()):
        raise _fail("standard input: not a JSON object (label: store text) or list of store texts")
    copies: dict[str, object] = {}
    for label, text in texts.items():
        try:
            copies[label] = yaml.safe_load(text)
        except yaml.YAMLError as error:
            # Only the position: the YAML library's message quotes the text, which holds password hashes.
            mark = getattr(error, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            raise _fail(f"copy {label}: not valid YAML{where}") from None
    try:
        changed, merged = _store(settings).merge_api_keys_from(copies, dry_run=dry_run)
    except StoreError as error:
        raise _fail(str(error)) from None
    verb = "would change" if dry_run else "changed"
    payload: dict[str, object] = {"changed": changed}
    if print_merged:
        payload["store"] = merged
    _report(as_json, payload, f"{settings.auth.store_path}: {verb if changed else 'unchanged'}")


@keys_app.command("list")
def keys_list(config: ConfigOption, as_json: JsonOption = False) -> None:
    """List API keys (never the keys themselves)."""
    rows = [
        {"id": k.id, "name": k.name, "role": k.role, "created_at": k.created_at}
        for k in _store(_config(config)).api_keys()
    ]
    _report(as_json, {"api_keys": rows}, "\n".join(f"{r['id']}\t{r['name']}\t{r['role']}" for r in rows))


# Signing keys and tokens ---------------------------------------------------------------------------------
@signing_app.command("init")
def signing_init(
    config: ConfigOption,
    kid: Annotated[str, typer.Option(help="Id of the first key.")] = "k1",
    as_json: JsonOption = False,
) -> None:
    """Create the signing-keys file with one random key, unless it exists."""
    from lab_llm.auth.tokens import generate_signing_keys_document
    from lab_llm.auth.watched_file import write_private_yaml

    path = _config(config).auth.signing_keys_path
    if path.exists():
        _report(as_json, {"changed": False}, f"{path}: exists, unchanged")
        return
    write_private_yaml(path, generate_signing_keys_document(kid))
    _report(as_json, {"changed": True}, f"{path}: created with key {kid}")


@signing_app.command("rotate")
def signing_rotate(
    config: ConfigOption,
    kid: Annotated[str, typer.Option(help="Id of the new key.")],
    keep: Annotated[int, typer.Option(help="How many keys to keep accepting, the new one included.")] = 2,
) -> None:
    """Add a new key and sign with it; older keys stay accepted until `keep` is exceeded."""
    from lab_llm.auth.tokens import generate_signing_keys_document
    from lab_llm.auth.watched_file import write_private_yaml

    path = _config(config).auth.signing_keys_path
    document = yaml.safe_load(path.read_text()) if path.exists() else {"keys": []}
    if any(entry.get("kid") == kid for entry in document["keys"]):
        raise _fail(f"signing key {kid!r} exists already in {path}")
    new_key = generate_signing_keys_document(kid)["keys"][0]
    document = {"active_kid": kid, "keys": [new_key, *document["keys"]][: max(keep, 1)]}
    write_private_yaml(path, document)
    typer.echo(f"{path}: now signing with {kid}; accepting {', '.join(k['kid'] for k in document['keys'])}")


@app.command("token")
def token(
    config: ConfigOption,
    user: Annotated[str, typer.Option(help="User to log in as.")],
    password_stdin: Annotated[bool, typer.Option(help="Read the password from standard input.")] = False,
) -> None:
    """Print an access token for a user (for scripts), after checking the password."""
    from lab_llm.auth import token_service

    settings = _config(config)
    password = _secret("Password", password_stdin)
    found = _store(settings).verify_password(user, password)
    if found is None:
        raise _fail("incorrect username or password")
    typer.echo(token_service(settings.auth).issue(found.name, found.role))


@app.command("hash-password")
def hash_password_command(
    password_stdin: Annotated[bool, typer.Option(help="Read the password from standard input.")] = False,
) -> None:
    """Print the argon2id hash of a password (for a store written by other tools)."""
    from lab_llm.auth.store import StoreError, hash_password

    try:
        typer.echo(hash_password(_secret("Password", password_stdin)))
    except StoreError as error:
        raise _fail(str(error)) from None


# The app -------------------------------------------------------------------------------------------------
@app.command("check")
def check(
    config: ConfigOption,
    signing_keys: Annotated[
        bool,
        typer.Option(
            "--signing-keys/--no-signing-keys",
            help="Require the signing-keys file (--no-signing-keys: it is made after the configuration is written).",
        ),
    ] = True,
) -> None:
    """Validate a configuration without starting anything; `-c -` reads it from standard input (to check a
    configuration before it is written)."""
    settings = _config(config)
    problems = []
    if signing_keys and not settings.auth.signing_keys_path.exists():
        problems.append(f"auth.signing_keys_path: {settings.auth.signing_keys_path} does not exist")
    model_path = Path(settings.engine.model)
    if settings.engine.model.startswith(("/", ".")) and not (model_path / "config.json").is_file():
        problems.append(f"engine.model: {model_path} has no config.json")
    elif (model_path / "config.json").is_file():
        problems.extend(model_layout_problems(settings.engine, model_path / "config.json"))
    if problems:
        raise _fail(f"{config}:\n  " + "\n  ".join(problems))
    typer.echo(
        f"{config}: ok (model {settings.engine.model_id}, TP={settings.engine.tensor_parallel_size}, "
        f"PP={settings.engine.pipeline_parallel_size}, {settings.serving.accelerator})"
    )


@app.command("serve")
def serve_command(
    config: ConfigOption,
    address: Annotated[str | None, typer.Option(help="Ray cluster address; default: start a local Ray.")] = None,
    num_cpus: Annotated[int | None, typer.Option(help="Logical CPUs of a local Ray (CPU engine needs >= 3).")] = None,
    host: str = "127.0.0.1",
    port: int = 8000,
) -> None:
    """Run the app on Ray until interrupted.

    A local Ray starts with the one-hop environment (`lab_llm.serve_env`: HAProxy in front of the engine's replica),
    HAProxy's files in a directory of its own and its side ports (stats, metrics, fallback proxy) on free ports, so
    it stands beside another Ray on this host; a variable already set in the environment wins. With --address the
    cluster's own environment applies (set where that Ray started).
    """
    settings = _config(config)
    haproxy_dir = _set_one_hop_environment() if address is None else None
    import ray
    from ray import serve

    from lab_llm.app import build_app

    # "local" starts a Ray of our own; address=None would join whatever RAY_ADDRESS or `ray start` left behind.
    ray.init(address=address or "local", num_cpus=num_cpus if address is None else None)
    serve.start(http_options={"host": host, "port": port})
    try:
        serve.run(build_app(settings.model_dump(mode="json")), name="lab-llm", route_prefix="/", blocking=True)
    finally:
        if haproxy_dir is not None:
            shutil.rmtree(haproxy_dir, ignore_errors=True)


def _set_one_hop_environment() -> Path:
    """Before Ray is imported: the one-hop variables, unless the environment sets them already. Returns the directory
    made for HAProxy's files (removed when `lab-llm serve` ends)."""
    import os
    import socket
    import tempfile

    from lab_llm.serve_env import HAPROXY_PORTS, haproxy_env

    def free_port() -> int:
        with socket.socket() as probe:
            probe.bind(("", 0))
            return int(probe.getsockname()[1])

    directory = Path(tempfile.mkdtemp(prefix="lab-llm-", dir="/tmp"))  # short: HAProxy limits socket paths
    for name, value in haproxy_env(directory, {name: free_port() for name in HAPROXY_PORTS}).items():
        os.environ.setdefault(name, value)
    return directory


@app.command("stop-stack")
def stop_stack_command(
    stack: Annotated[str, typer.Argument(help="The stack's LAB_LLM_STACK value (ray_node: the node's Ray temp dir).")],
    grace_s: Annotated[float, typer.Option(help="Seconds between SIGTERM and SIGKILL.")] = 10.0,
    as_json: JsonOption = False,
) -> None:
    """Stop every process of a Ray + vLLM stack started without systemd: SIGTERM, then SIGKILL after a grace time.

    Finds them by the LAB_LLM_STACK variable they inherited, so vLLM's orphaned engine processes are stopped too.
    """
    from lab_llm.stack import stop_stack

    report = stop_stack(stack, grace_s=grace_s)
    payload = {
        "changed": bool(report.terminated or report.killed),
        "terminated": report.terminated,
        "killed": report.killed,
        "survivors": report.survivors,
    }
    _report(
        as_json,
        payload,
        f"{stack}: {len(report.terminated)} stopped on SIGTERM, {len(report.killed)} needed SIGKILL"
        + (f", {len(report.survivors)} still alive: {report.survivors}" if report.survivors else ""),
    )
    if report.survivors:
        raise typer.Exit(code=1)


@app.command("tiny-model")
def tiny_model_command(
    out: Annotated[Path, typer.Option(help="Directory to write the model into.")],
    force: Annotated[bool, typer.Option(help="Build again even if the recipe is unchanged.")] = False,
) -> None:
    """Generate the tiny random-weight Llama used by the demo and the tests."""
    from lab_llm import tiny_model

    built = tiny_model.build(out, force=force)
    typer.echo(f"{out}: {'built' if built else 'up to date'}")


# Sub-commands that live beside their library.
app.command("plan")(plan_command)


def main() -> None:
    app()
