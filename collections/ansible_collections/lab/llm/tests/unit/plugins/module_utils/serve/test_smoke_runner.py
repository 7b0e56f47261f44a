"""module_utils/serve/smoke_runner.py against the test double of the lab-llm HTTP API on loopback: which model it asks,
what it returns, and which call a failure names."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ansible_collections.lab.llm.plugins.module_utils.serve.client import ServeApi, ServeApiError
from ansible_collections.lab.llm.plugins.module_utils.serve.smoke_runner import REPLY_SHOWN_CHARS, SmokeTestRunner
from tests.standins.k8s.lab_llm_app import FakeLabLlm, running_app, serve

app = running_app


def smoke(url: str, **extra: Any) -> dict[str, Any]:
    params = dict(url=url, username="admin", password="s3cret", model=None, prompt="Say hello.", max_tokens=8)
    return SmokeTestRunner(ServeApi(url), {**params, **extra}).run()


def test_without_a_model_it_asks_the_first_listed_and_changes_nothing(app: FakeLabLlm) -> None:
    result = smoke(app.url)
    assert result == {
        "changed": False,
        "model": "qwen2.5-32b",
        "reply": "Hello from qwen2.5-32b",
        "usage": {"completion_tokens": 3},
    }
    assert app.keys == {}


def test_a_given_model_is_asked_and_a_long_reply_is_cut(app: FakeLabLlm) -> None:
    model = "m" * 300
    result = smoke(app.url, model=model)
    assert result["model"] == model
    assert result["reply"] == ("Hello from " + model)[:REPLY_SHOWN_CHARS]
    assert len(result["reply"]) == REPLY_SHOWN_CHARS


class NoModels(FakeLabLlm):
    def __call__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        if path == "/v1/models":
            return 200, {"Content-Type": "application/json"}, b'{"object": "list", "data": []}'
        return super().__call__(method, path, headers, body)


@pytest.fixture
def empty_app() -> Iterator[NoModels]:
    fake = NoModels()
    server = serve(fake)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


def test_an_endpoint_that_lists_no_model_fails_naming_the_call(empty_app: NoModels) -> None:
    with pytest.raises(ServeApiError, match=r"^GET http://127\.0\.0\.1:\d+/v1/models lists no model$"):
        smoke(empty_app.url)


def test_a_refused_login_fails_naming_the_call(app: FakeLabLlm) -> None:
    with pytest.raises(ServeApiError, match=r"POST http://127\.0\.0\.1:\d+/auth/token answered HTTP 401"):
        smoke(app.url, password="nope")
    assert app.tokens == set()
