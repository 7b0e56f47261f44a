"""The gated app in process: built the way `build_app` builds it, driven by FastAPI's test client, no Ray cluster.

Ray Serve calls the ingress's route methods on the replica's instance (`serve.get_replica_context()
.servable_object`); the tests put a `GatedIngress` there whose engine handle is a stand-in (`FakeEngine`) that
answers the way `LLMServer`'s handle does: async generators of the engine's response objects, or the exceptions
Ray raises (a remote exception is a `RayTaskError` that is also an instance of its cause).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from ray import serve

from lab_llm.app.builder import gated_ingress, to_llm_config
from lab_llm.app.engine_contract import to_model_metadata
from lab_llm.app.ingress import GatedIngress
from lab_llm.app.security import Gate
from lab_llm.auth.store import hash_password
from lab_llm.auth.tokens import generate_signing_keys_document
from lab_llm.config import AppConfig, parse_config
from tests.conftest import REPO_ROOT

SERVED_MODEL = "allowed/x"  # a served id with a slash: `GET /v1/models/allowed--x` is how a client names it
PASSWORD = "correct-horse-battery"
CONTRACT_FILE = REPO_ROOT / "tests" / "contract" / "openai-openapi.reduced.json"


def chat_response(model: str = SERVED_MODEL) -> Any:
    from ray.llm._internal.serve.core.configs.openai_api_models import ChatCompletionResponse

    return ChatCompletionResponse.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }
    )


@dataclass
class FakeEngine:
    """Stands in for the `LLMServer` deployment handle. `failure` is raised on the next call (at `.remote()` for
    BackPressureError, as Serve's router does; else on the first item); `stream` chunks are yielded as is."""

    failure: BaseException | None = None
    health_failure: BaseException | None = None
    stream: list[Any] = field(default_factory=list)
    received: list[Any] = field(default_factory=list)

    def options(self, **_options: Any) -> FakeEngine:
        return self

    def _call(self, body: Any, _raw: Any = None) -> AsyncIterator[Any]:
        from ray.serve.exceptions import BackPressureError

        self.received.append(body)
        if isinstance(self.failure, BackPressureError):
            raise self.failure
        failure, stream = self.failure, list(self.stream)

        async def answer() -> AsyncIterator[Any]:
            if failure is not None:
                raise failure
            if stream:
                for chunk in stream:
                    if isinstance(chunk, BaseException):
                        raise chunk
                    yield chunk
                return
            yield chat_response()

        return answer()

    @property
    def chat(self) -> SimpleNamespace:
        return SimpleNamespace(remote=self._call)

    @property
    def completions(self) -> SimpleNamespace:
        return SimpleNamespace(remote=self._call)

    @property
    def check_health(self) -> SimpleNamespace:
        async def remote() -> None:
            if self.health_failure is not None:
                raise self.health_failure

        return SimpleNamespace(remote=remote)


@dataclass
class GatedApp:
    client: TestClient
    app: FastAPI
    gate: Gate
    engine: FakeEngine
    config: AppConfig
    tokens: dict[str, str]
    keys: dict[str, str]

    def headers(self, who: str) -> dict[str, str]:
        credential = self.tokens.get(who) or self.keys[who]
        return {"Authorization": f"Bearer {credential}"}


@functools.cache
def password_hash() -> str:
    return hash_password(PASSWORD)


def app_config(tmp_path: Path, **auth: Any) -> AppConfig:
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{}")
    keys_file = tmp_path / "signing-keys.yaml"
    keys_file.write_text(yaml.safe_dump(generate_signing_keys_document("k1")))
    return parse_config(
        {
            "engine": {"model": str(model), "served_model_name": SERVED_MODEL, "max_model_len": 64},
            "serving": {"accelerator": "cpu"},
            "auth": {
                "store_path": str(tmp_path / "store.yaml"),
                "signing_keys_path": str(keys_file),
                "roles": {
                    "admin": {"scopes": ["models", "chat", "completions", "metrics", "admin"]},
                    "user": {"scopes": ["models", "chat", "completions"]},
                    "viewer": {"scopes": ["models"]},
                    "restricted": {"scopes": ["models", "chat", "completions"], "models": ["allowed-*"]},
                },
                **auth,
            },
        }
    )


def build_gated_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **auth: Any) -> GatedApp:
    config = app_config(tmp_path, **auth)
    _ingress_cls, fastapi_app, gate = gated_ingress(config)
    engine = FakeEngine()
    model_id = config.engine.model_id
    instance = GatedIngress(
        llm_deployments={model_id: engine},
        model_cards={model_id: to_model_metadata(model_id, to_llm_config(config))},
        created=1_700_000_000,
    )
    monkeypatch.setattr(serve, "get_replica_context", lambda: SimpleNamespace(servable_object=instance))
    store = gate.store
    users = {"alice": "admin", "bob": "user", "vera": "viewer", "rita": "restricted"}
    # One argon2 hash for every user: hashing is slow on purpose, and the tests need many apps.
    config.auth.store_path.write_text(
        yaml.safe_dump(
            {"users": {name: {"role": role, "password_hash": password_hash()} for name, role in users.items()}}
        )
    )
    tokens = {name: gate.tokens.issue(name, role) for name, role in users.items()}
    keys = {role: store.add_api_key(f"{role}-key", role)[1] for role in ("user", "restricted")}
    client = TestClient(fastapi_app, raise_server_exceptions=False)
    return GatedApp(client, fastapi_app, gate, engine, config, tokens, {f"{k}-key": v for k, v in keys.items()})
