"""Whatever Ray or the engine raises, a client gets OpenAI's error body with the right status and nothing of the
exception: no traceback, pid, path, address or actor id (issues 10 and 18). The log keeps it, under the request id
that the client's error carries."""

from __future__ import annotations

import logging

import httpx
import pytest

from lab_llm.app.engine_contract import (
    BackPressureError,
    EngineDeadError,
    GracefulHTTPError,
    OpenAIHTTPException,
    RayTaskError,
    VLLMClientError,
)
from tests.unit.serve.app.contract import contract_errors
from tests.unit.serve.app.gated_app import SERVED_MODEL, GatedApp

CHAT = {"model": SERVED_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
INTERNALS = ("Traceback", "/home/", "site-packages", "pid=", "10.1.2.3", "ActorID", "ray::", "Internal exception")
RAY_TRACEBACK = (
    'Traceback (most recent call last):\n  File "/home/lab/.venv/lib/python3.11/site-packages/vllm/x.py", line 9\n'
    "ray::ServeReplica:lab-llm:LLMServer.chat() (pid=4242, ip=10.1.2.3, actor_id=ActorID(abc))"
)


def remote(cause: BaseException) -> BaseException:
    """The exception as the ingress sees it when the LLMServer replica raised `cause`."""
    return RayTaskError(
        "LLMServer.chat", RAY_TRACEBACK, cause, "ray::LLMServer", 4242, "10.1.2.3"
    ).as_instanceof_cause()


def assert_clean_error(answer: httpx.Response, status: int, openai_contract: dict) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert contract_errors(openai_contract, "ErrorResponse", body) == []
    for internal in INTERNALS:
        assert internal not in answer.text
    request_id = answer.headers["x-request-id"]
    assert request_id
    if status >= 500:
        assert request_id in body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize(
    ("failure", "status", "code", "retry_after"),
    [
        # The engine's own error answer, as Ray raises it: its message once, without Ray's wrapping.
        (
            OpenAIHTTPException(400, "This model's maximum context length is 64 tokens.", "BadRequestError"),
            400,
            "context_length_exceeded",
            False,
        ),
        (
            OpenAIHTTPException(400, '"auto" tool choice requires --enable-auto-tool-choice', "BadRequestError"),
            400,
            None,
            False,
        ),
        (OpenAIHTTPException(500, "KeyError: 'x' at /home/lab/x.py", "InternalServerError"), 500, None, False),
        (OpenAIHTTPException(503, "The engine is currently busy", "ServiceUnavailableError"), 503, None, True),
        (OpenAIHTTPException(422, "unprocessable image url", "UnprocessableEntityError"), 400, None, False),
        (OpenAIHTTPException(408, "Request server side timeout", "OpenAIHTTPException"), 503, None, True),
        # Overload: Serve's queue bound (raised at .remote()) and vLLM's admission control.
        (BackPressureError(num_queued_requests=64, max_queued_requests=64), 503, None, True),
        (remote(GracefulHTTPError("busy", 503)), 503, None, True),
        # The engine or its replica is down.
        (remote(EngineDeadError()), 503, None, True),
        # The request made the engine fail (issue 18's kinds: KeyError, TypeError, IndexError inside vLLM).
        (remote(KeyError("function")), 400, None, False),
        (remote(TypeError("unhashable type: 'list'")), 400, None, False),
        (remote(IndexError("token id 19512310641036 out of range")), 400, None, False),
        (remote(VLLMClientError("prompt token out of vocabulary")), 400, None, False),
        # A fault of this process itself.
        (RuntimeError("secret at /home/lab pid=1"), 500, None, False),
    ],
)
def test_engine_failures_become_clean_openai_errors(
    gated: GatedApp,
    openai_contract: dict,
    caplog: pytest.LogCaptureFixture,
    failure: BaseException,
    status: int,
    code: str | None,
    retry_after: bool,
) -> None:
    gated.engine.failure = failure
    with caplog.at_level(logging.INFO, logger="lab_llm.app"):
        answer = gated.client.post("/v1/chat/completions", json=CHAT, headers=gated.headers("bob"))
    error = assert_clean_error(answer, status, openai_contract)
    assert error["code"] == code
    assert ("retry-after" in answer.headers) is retry_after
    if retry_after:
        assert int(answer.headers["retry-after"]) >= 1
    if status != 400 or isinstance(failure, RayTaskError):
        # What the client did not see is in the log, under the id it did see.
        assert any(answer.headers["x-request-id"] in record.getMessage() for record in caplog.records)


def test_the_engines_own_message_reaches_the_client_once(gated: GatedApp, openai_contract: dict) -> None:
    gated.engine.failure = OpenAIHTTPException(400, "'max_tokens' is too large: 1000.", "BadRequestError")
    error = assert_clean_error(
        gated.client.post("/v1/chat/completions", json=CHAT, headers=gated.headers("bob")), 400, openai_contract
    )
    assert error["message"] == "'max_tokens' is too large: 1000."


def test_a_failure_mid_stream_ends_the_stream_with_an_openai_error_event(gated: GatedApp) -> None:
    gated.engine.stream = [['data: {"id": "1", "choices": []}\n\n'], remote(KeyError("boom"))]
    answer = gated.client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=gated.headers("bob"))
    events = [line for line in answer.text.split("\n") if line.startswith("data: ")]
    assert events[0] == 'data: {"id": "1", "choices": []}'
    assert events[-1] == "data: [DONE]"
    assert '"error"' in events[-2] and "Traceback" not in answer.text


def test_an_engine_error_event_in_a_stream_gets_openai_codes(gated: GatedApp, openai_contract: dict) -> None:
    import json

    vllm_event = {"error": {"message": "boom at /home/x", "type": "InternalServerError", "param": None, "code": 500}}
    gated.engine.stream = [[f"data: {json.dumps(vllm_event)}\n\n"]]
    answer = gated.client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=gated.headers("bob"))
    event = json.loads(next(line for line in answer.text.split("\n") if '"error"' in line)[len("data: ") :])
    assert contract_errors(openai_contract, "ErrorResponse", event) == []
    assert "/home/x" not in answer.text


@pytest.mark.parametrize(
    "model",
    [
        "allowed/x:nope",
        "allowed/x:",
        ":allowed/x",
        "allowed/x ",
        "ALLOWED/X",
        "../../etc/passwd",
        "a%00b",
        "модель",
        "x" * 5000,
        "allowed--x",
    ],
)
def test_a_model_that_is_not_served_is_a_404_whatever_its_characters(
    gated: GatedApp, openai_contract: dict, model: str
) -> None:
    for path, body in (
        ("/v1/chat/completions", {**CHAT, "model": model}),
        ("/v1/completions", {"model": model, "prompt": "x"}),
    ):
        error = assert_clean_error(
            gated.client.post(path, json=body, headers=gated.headers("bob")), 404, openai_contract
        )
        assert error["code"] == "model_not_found" and error["param"] == "model"
    assert gated.engine.received == []


@pytest.mark.parametrize(
    "body",
    [
        {"model": SERVED_MODEL, "messages": None},
        {"model": SERVED_MODEL, "messages": False},
        {"model": SERVED_MODEL, "messages": 0},
        {"model": SERVED_MODEL},
        {"model": SERVED_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": "many"},
        {"model": SERVED_MODEL, "messages": [{"role": "user", "content": "hi"}], "n": {"a": 1}},
    ],
)
def test_a_malformed_chat_body_is_a_400_before_the_engine(gated: GatedApp, openai_contract: dict, body: dict) -> None:
    assert_clean_error(
        gated.client.post("/v1/chat/completions", json=body, headers=gated.headers("bob")), 400, openai_contract
    )
    assert gated.engine.received == []


def test_gate_errors_use_openai_codes(gated: GatedApp, openai_contract: dict) -> None:
    missing = gated.client.get("/v1/models")
    assert assert_clean_error(missing, 401, openai_contract)["code"] == "invalid_api_key"
    forbidden = gated.client.post("/v1/chat/completions", json=CHAT, headers=gated.headers("vera"))
    assert assert_clean_error(forbidden, 403, openai_contract)["code"] is None
    unknown_route = gated.client.get("/v1/nothing-here", headers=gated.headers("bob"))
    assert_clean_error(unknown_route, 404, openai_contract)
    wrong_method = gated.client.delete("/v1/chat/completions", headers=gated.headers("bob"))
    assert_clean_error(wrong_method, 405, openai_contract)


def test_model_objects_follow_openais_contract(gated: GatedApp, openai_contract: dict) -> None:
    listed = gated.client.get("/v1/models", headers=gated.headers("bob")).json()
    assert contract_errors(openai_contract, "ListModelsResponse", listed) == []
    assert listed["data"][0] == {"id": SERVED_MODEL, "object": "model", "created": 1_700_000_000, "owned_by": "lab-llm"}
    one = gated.client.get("/v1/models/allowed--x", headers=gated.headers("bob")).json()
    assert contract_errors(openai_contract, "Model", one) == []


def test_readiness_follows_the_engine(gated: GatedApp, openai_contract: dict) -> None:
    assert gated.client.get("/readyz").json() == {"status": "ready"}
    gated.engine.health_failure = remote(EngineDeadError())
    answer = gated.client.get("/readyz")
    assert_clean_error(answer, 503, openai_contract)
    assert int(answer.headers["retry-after"]) >= 1
    assert gated.client.get("/healthz").json() == {"status": "ok"}  # liveness: the gate itself answers
