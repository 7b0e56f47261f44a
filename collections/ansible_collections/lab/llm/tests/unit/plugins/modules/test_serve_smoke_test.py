"""lab.llm.serve_smoke_test against a test double of the lab-llm HTTP API on loopback (/readyz, /auth/token,
/v1/models, /v1/chat/completions)."""

from __future__ import annotations

from ansible_collections.lab.llm.plugins.modules import serve_smoke_test
from tests.module_runner import run_module
from tests.standins.k8s.lab_llm_app import FakeLabLlm, running_app

app = running_app


def test_smoke_test_gets_a_token_and_a_chat_completion(app: FakeLabLlm) -> None:
    result = run_module(serve_smoke_test.main, dict(url=app.url, username="admin", password="s3cret"))
    assert not result.get("failed"), result
    assert (result["model"], result["reply"], result["changed"]) == ("qwen2.5-32b", "Hello from qwen2.5-32b", False)


def test_smoke_test_names_the_call_that_failed(app: FakeLabLlm) -> None:
    result = run_module(serve_smoke_test.main, dict(url=app.url, username="admin", password="nope"))
    assert result["failed"] is True
    assert result["msg"].startswith(f"smoke test: POST {app.url}/auth/token answered HTTP 401")


def test_smoke_test_fails_while_the_engine_is_not_ready(app: FakeLabLlm) -> None:
    app.ready = False  # the gate is alive (/healthz), the engine is not (/readyz)
    result = run_module(serve_smoke_test.main, dict(url=app.url, username="admin", password="s3cret"))
    assert result["failed"] is True
    assert result["msg"].startswith(f"smoke test: GET {app.url}/readyz answered HTTP 503")
