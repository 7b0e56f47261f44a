"""lab.llm.serve_api_key against a test double of the lab-llm HTTP API on loopback (the endpoints and shapes the app
defines: /auth/token, /admin/keys, /v1/models); Secrets in the k8s stand-in."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from ansible_collections.lab.llm.plugins.modules import serve_api_key
from tests.module_runner import run_module
from tests.standins.k8s import fixtures
from tests.standins.k8s.lab_llm_app import FakeLabLlm, running_app
from tests.standins.k8s.server import KubeApiStandIn

kube_api = fixtures.kube_api
app = running_app


@pytest.fixture
def openwebui_namespace(kube_api: KubeApiStandIn) -> None:
    kube_api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "openwebui"}})


def key_args(app: FakeLabLlm, **extra: Any) -> dict[str, Any]:
    base = dict(
        url=app.url,
        admin_username="admin",
        admin_password="s3cret",
        key_name="openwebui",
        secret_name="openwebui-openai",
        secret_namespace="openwebui",
    )
    return {**base, **extra}


def stored_key(api: KubeApiStandIn) -> str:
    secret = api.get("v1", "Secret", "openwebui-openai", "openwebui")
    return base64.b64decode(secret["data"]["OPENAI_API_KEY"]).decode()


def test_creates_a_key_once_and_keeps_it_while_it_works(
    kube_api: KubeApiStandIn, app: FakeLabLlm, openwebui_namespace: None
) -> None:
    first = run_module(serve_api_key.main, key_args(app))
    assert not first.get("failed"), first
    assert first["changed"] is True
    assert first["secret"] == "openwebui/openwebui-openai"
    key = stored_key(kube_api)
    assert [entry["key"] for entry in app.keys.values()] == [key]
    assert key not in json.dumps(first)

    second = run_module(serve_api_key.main, key_args(app))
    assert second["changed"] is False
    assert len(app.keys) == 1


def test_a_key_the_endpoint_no_longer_accepts_is_replaced(
    kube_api: KubeApiStandIn, app: FakeLabLlm, openwebui_namespace: None
) -> None:
    assert not run_module(serve_api_key.main, key_args(app)).get("failed")
    old = stored_key(kube_api)
    for entry in app.keys.values():
        entry["key"] = "revoked"  # the store lost it; the stale entry still has the name
    result = run_module(serve_api_key.main, key_args(app))
    assert result["changed"] is True
    assert stored_key(kube_api) != old
    assert len(app.keys) == 1  # the stale key of the same name was deleted


def test_check_mode_creates_no_key(kube_api: KubeApiStandIn, app: FakeLabLlm, openwebui_namespace: None) -> None:
    result = run_module(serve_api_key.main, key_args(app), check_mode=True)
    assert result["changed"] is True
    assert app.keys == {}
    assert kube_api.get("v1", "Secret", "openwebui-openai", "openwebui") is None


def test_wrong_admin_password_names_the_step(
    kube_api: KubeApiStandIn, app: FakeLabLlm, openwebui_namespace: None
) -> None:
    result = run_module(serve_api_key.main, key_args(app, admin_password="not-the-password"))
    assert result["failed"] is True
    assert result["msg"] == (
        f"API key openwebui for openwebui/openwebui-openai: POST {app.url}/auth/token answered "
        'HTTP 401: {"error": {"message": "incorrect username or password", "type": "authentication_error", '
        '"param": null, "code": "invalid_api_key"}}'
    )


def test_a_key_list_in_another_shape_fails_naming_the_call_and_writes_nothing(
    kube_api: KubeApiStandIn, app: FakeLabLlm, openwebui_namespace: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET /admin/keys answers a JSON list (serve/lab_llm/app/routes.py); anything else is refused, not guessed at."""
    answer = FakeLabLlm.__call__

    def wrapped_list(fake: FakeLabLlm, method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        code, extra, data = answer(fake, method, path, headers, body)
        if (method, path) == ("GET", "/admin/keys"):
            data = json.dumps({"keys": json.loads(data)}).encode()
        return code, extra, data

    monkeypatch.setattr(FakeLabLlm, "__call__", wrapped_list)
    result = run_module(serve_api_key.main, key_args(app))
    assert result["failed"] is True
    assert result["msg"] == (
        f"API key openwebui for openwebui/openwebui-openai: GET {app.url}/admin/keys returned "
        "{'keys': []}, not a list of keys"
    )
    assert app.keys == {}
    assert kube_api.get("v1", "Secret", "openwebui-openai", "openwebui") is None


def test_a_role_the_gate_does_not_know_fails_before_the_old_key_is_deleted(
    kube_api: KubeApiStandIn, app: FakeLabLlm, openwebui_namespace: None
) -> None:
    assert not run_module(serve_api_key.main, key_args(app)).get("failed")
    for entry in app.keys.values():
        entry["key"] = "revoked"  # the stored key no longer works: a run would replace it
    keys_before = {key_id: dict(entry) for key_id, entry in app.keys.items()}
    secret_before = kube_api.get("v1", "Secret", "openwebui-openai", "openwebui")
    result = run_module(serve_api_key.main, key_args(app, key_role="reader"))
    assert result["failed"] is True
    assert "value of key_role must be one of: admin, user, viewer, got: reader" in result["msg"]
    assert app.keys == keys_before
    assert kube_api.get("v1", "Secret", "openwebui-openai", "openwebui") == secret_before


def test_the_diff_shows_key_metadata_and_never_a_key(
    kube_api: KubeApiStandIn, app: FakeLabLlm, openwebui_namespace: None
) -> None:
    predicted = run_module(serve_api_key.main, {**key_args(app, key_role="viewer"), "_ansible_diff": True},
                           check_mode=True)  # fmt: skip
    assert predicted["diff"] == {
        "before": {"secret": "openwebui/openwebui-openai", "stored_key": "none"},
        "after": {"secret": "openwebui/openwebui-openai", "key_name": "openwebui", "key_role": "viewer"},
    }
    first = run_module(serve_api_key.main, key_args(app))
    for entry in app.keys.values():
        entry["key"] = "revoked"
    old_id = next(iter(app.keys))
    replaced = run_module(serve_api_key.main, key_args(app))
    assert replaced["diff"]["before"] == {
        "secret": "openwebui/openwebui-openai", "stored_key": "refused by the endpoint",
        "endpoint_keys": [{"id": old_id, "name": "openwebui", "role": "user"}],
    }  # fmt: skip
    assert replaced["diff"]["after"]["key_id"] == replaced["key_id"] != first["key_id"]
    assert stored_key(kube_api) not in json.dumps(replaced)
    assert run_module(serve_api_key.main, key_args(app))["diff"] == {"before": {}, "after": {}}


def test_key_roles_are_lab_llms_default_roles() -> None:
    """The module's choices are the roles lab-llm's gate is configured with by default; fails when they drift."""
    config = pytest.importorskip("lab_llm.config")
    from ansible_collections.lab.llm.plugins.module_utils.serve.client import KEY_ROLES

    factory = config.AuthConfig.model_fields["roles"].default_factory
    assert sorted(KEY_ROLES) == sorted(factory())
