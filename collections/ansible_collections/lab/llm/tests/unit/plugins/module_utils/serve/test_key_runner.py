"""module_utils/serve/key_runner.py against the test double of the lab-llm HTTP API on loopback (tokens, API keys
shown once) and the Kubernetes API stand-in (the Secret): bad input fails before the first call, check mode writes
nothing, a second run changes nothing, a refused key is replaced."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.lab.llm.plugins.module_utils.k8s import client, service
from ansible_collections.lab.llm.plugins.module_utils.k8s.secrets import secret_text
from ansible_collections.lab.llm.plugins.module_utils.serve.client import ServeApi, ServeApiError
from ansible_collections.lab.llm.plugins.module_utils.serve.key_runner import ApiKeyRunner
from tests.standins.k8s import fixtures
from tests.standins.k8s.lab_llm_app import FakeLabLlm, running_app
from tests.standins.k8s.server import KubeApiStandIn

kube_api = fixtures.kube_api
app = running_app


@pytest.fixture
def k8s(kube_api: KubeApiStandIn) -> service.K8sService:
    """A K8sService of the stand-in, with the namespace the Secret goes to."""
    kube_api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "openwebui"}})
    return service.K8sService(client.connect({}))


def params(**extra: Any) -> dict[str, Any]:
    base = dict(
        key_name="openwebui",
        key_role="user",
        admin_username="admin",
        admin_password="s3cret",
        secret_name="openwebui-openai",
        secret_namespace="openwebui",
        secret_key="OPENAI_API_KEY",
    )
    return {**base, **extra}


def run(k8s: service.K8sService, app: FakeLabLlm, check_mode: bool = False, **extra: Any) -> dict[str, Any]:
    return ApiKeyRunner(k8s, ServeApi(app.url), params(**extra), check_mode).run()


def stored(k8s: service.K8sService) -> str | None:
    return secret_text(k8s.get("v1", "Secret", "openwebui-openai", "openwebui"), "OPENAI_API_KEY")


def test_an_unknown_role_fails_before_the_first_call(
    kube_api: KubeApiStandIn, k8s: service.K8sService, app: FakeLabLlm
) -> None:
    run(k8s, app)
    for entry in app.keys.values():
        entry["key"] = "revoked"  # the stored key no longer works: a run would replace it
    keys, events, tokens = {i: dict(e) for i, e in app.keys.items()}, len(kube_api.events), set(app.tokens)
    with pytest.raises(ServeApiError, match="key_role 'reader' is not one of admin, user, viewer"):
        run(k8s, app, key_role="reader")
    assert (app.keys, len(kube_api.events), app.tokens) == (keys, events, tokens)


def test_check_mode_predicts_the_key_and_writes_nothing(
    kube_api: KubeApiStandIn, k8s: service.K8sService, app: FakeLabLlm
) -> None:
    events = len(kube_api.events)
    result = run(k8s, app, check_mode=True)
    assert result["changed"] is True and "key_id" not in result
    assert result["diff"]["before"] == {"secret": "openwebui/openwebui-openai", "stored_key": "none"}
    assert (app.keys, app.tokens, len(kube_api.events), stored(k8s)) == ({}, set(), events, None)


def test_a_second_run_keeps_the_working_key(kube_api: KubeApiStandIn, k8s: service.K8sService, app: FakeLabLlm) -> None:
    first = run(k8s, app)
    assert first["changed"] is True
    key = stored(k8s)
    assert [entry["key"] for entry in app.keys.values()] == [key]
    events = len(kube_api.events)
    second = run(k8s, app)
    assert second == {"changed": False, "secret": "openwebui/openwebui-openai", "diff": {"before": {}, "after": {}}}
    assert (stored(k8s), len(app.keys), len(kube_api.events)) == (key, 1, events)


def test_a_refused_key_is_replaced_and_the_stale_one_deleted(k8s: service.K8sService, app: FakeLabLlm) -> None:
    first = run(k8s, app)
    old_id, old_key = first["key_id"], stored(k8s)
    app.keys[old_id]["key"] = "revoked"  # the store lost it; the entry of that name is still listed
    result = run(k8s, app)
    assert result["changed"] is True and result["key_id"] != old_id
    assert result["diff"]["before"]["endpoint_keys"] == [{"id": old_id, "name": "openwebui", "role": "user"}]
    assert list(app.keys) == [result["key_id"]]
    assert stored(k8s) not in (None, old_key) and stored(k8s) == app.keys[result["key_id"]]["key"]
