"""Whatever the engine answers or raises, a client gets OpenAI's error body with the right status and nothing of
the engine's internals: no traceback, pid, path, address or actor id (issues 10 and 18). The log keeps it, under the
request id that the client's error carries."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import httpx
import pytest

from lab_llm.app.engine_contract import EngineDeadError, VLLMClientError
from tests.unit.serve.app.contract import contract_errors
from tests.unit.serve.app.gated_app import SERVED_MODEL, FakeVLLM, GatedApp, build_gated_app

CHAT = {"model": SERVED_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
COMPLETION = {"model": SERVED_MODEL, "prompt": "hi", "max_tokens": 2}
INTERNALS = ("Traceback", "/home/", "site-packages", "pid=", "10.1.2.3", "ActorID", "ray::", "Internal exception")


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
    ("failure", "dead", "status", "code", "retry_after"),
    [
        # The engine's own error answer (vLLM's JSON ErrorResponse): its message once, with OpenAI's codes.
        ((400, "This model's maximum context length is 64 tokens."), False, 400, "context_length_exceeded", False),
        ((400, '"auto" tool choice requires --enable-auto-tool-choice'), False, 400, None, False),
        ((404, "The model `x` does not exist."), False, 404, "model_not_found", False),
        ((422, "unprocessable image url"), False, 400, None, False),
        ((501, "this engine does not do that"), False, 400, None, False),
        # vLLM's admission control or a retryable generation error; a timeout.
        ((503, "The engine is currently busy"), False, 503, None, True),
        ((408, "Request server side timeout"), False, 503, None, True),
        # A 500 of a live engine: the request made vLLM fail (issue 18's KeyError on a custom tool, a token id out of
        # range...): 400, generic, the engine's words (a path) only in the log.
        ((500, "KeyError: 'function' at /home/lab/x.py"), False, 400, None, False),
        # The engine is dead: whatever it answered, retry later.
        ((500, "EngineCore encountered an issue. See stack trace (above) for the root cause."), True, 503, None, True),
        # Exceptions that escape vLLM's app (its error middleware answered 500, then re-raised).
        (KeyError("function"), False, 400, None, False),
        (EngineDeadError(), True, 503, None, True),
        (VLLMClientError("prompt token out of vocabulary"), False, 400, None, False),
    ],
)
def test_engine_failures_become_clean_openai_errors(
    gated: GatedApp,
    openai_contract: dict,
    caplog: pytest.LogCaptureFixture,
    failure: tuple[int, str] | BaseException,
    dead: bool,
    status: int,
    code: str | None,
    retry_after: bool,
) -> None:
    gated.engine.failure = failure
    gated.engine.dead = dead
    with caplog.at_level(logging.INFO, logger="lab_llm.app"):
        answer = gated.client.post("/v1/chat/completions", json=CHAT, headers=gated.headers("bob"))
    error = assert_clean_error(answer, status, openai_contract)
    assert error["code"] == code
    assert ("retry-after" in answer.headers) is retry_after
    if retry_after:
        assert int(answer.headers["retry-after"]) >= 1
    if status != 400 or not isinstance(failure, tuple) or failure[0] >= 500:
        # What the client did not see is in the log, under the id it did see.
        assert any(answer.headers["x-request-id"] in record.getMessage() for record in caplog.records)


def test_the_engines_own_message_reaches_the_client_once(gated: GatedApp, openai_contract: dict) -> None:
    gated.engine.failure = (400, "'max_tokens' is too large: 1000.")
    error = assert_clean_error(
        gated.client.post("/v1/chat/completions", json=CHAT, headers=gated.headers("bob")), 400, openai_contract
    )
    assert error["message"] == "'max_tokens' is too large: 1000."


def test_the_engines_param_names_the_field_at_fault(gated: GatedApp, openai_contract: dict) -> None:
    # vLLM answers a VLLMValidationError with its `parameter` as `param` (error_response.py), also mid-stream.
    gated.engine.failure = (400, "max_tokens must be at least 1, got 0.", "max_tokens")
    answered = gated.client.post("/v1/chat/completions", json=CHAT, headers=gated.headers("bob"))
    assert assert_clean_error(answered, 400, openai_contract)["param"] == "max_tokens"
    gated.engine.failure = None
    gated.engine.stream = [
        'data: {"id": "1", "choices": []}\n\n',
        'data: {"error": '
        + json.dumps(
            {
                "message": "top_logprobs must be at most 20",
                "type": "BadRequestError",
                "param": "top_logprobs",
                "code": 400,
            }
        )
        + "}\n\n",
    ]
    streamed = gated.client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=gated.headers("bob"))
    events = [json.loads(line[6:]) for line in streamed.text.split("\n") if line.startswith('data: {"error"')]
    assert [event["error"]["param"] for event in events] == ["top_logprobs"]


def test_a_failure_mid_stream_ends_the_stream_with_an_openai_error_event(gated: GatedApp) -> None:
    gated.engine.stream = ['data: {"id": "1", "choices": []}\n\n', KeyError("boom")]
    answer = gated.client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=gated.headers("bob"))
    events = [line for line in answer.text.split("\n") if line.startswith("data: ")]
    assert events[0] == 'data: {"id": "1", "choices": []}'
    assert events[-1] == "data: [DONE]"
    assert '"error"' in events[-2] and "Traceback" not in answer.text


def test_an_engine_error_event_in_a_stream_gets_openai_codes(gated: GatedApp, openai_contract: dict) -> None:
    vllm_event = {"error": {"message": "boom at /home/x", "type": "InternalServerError", "param": None, "code": 500}}
    gated.engine.stream = [
        'data: {"id": "1", "choices": []}\n\n',
        f"data: {json.dumps(vllm_event)}\n\n",
        "data: [DONE]\n\n",
    ]
    answer = gated.client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=gated.headers("bob"))
    assert answer.status_code == 200
    event = json.loads(next(line for line in answer.text.split("\n") if '"error"' in line)[len("data: ") :])
    assert contract_errors(openai_contract, "ErrorResponse", event) == []
    assert "/home/x" not in answer.text


def vllm_event(status: int, message: str, param: str | None = None, error_type: str = "BadRequestError") -> str:
    error = {"message": message, "type": error_type, "param": param, "code": status}
    return f"data: {json.dumps({'error': error})}\n\n"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
@pytest.mark.parametrize(
    ("first", "dead", "status", "param", "code", "retry_after"),
    [
        # vLLM refuses the request before its first output (an out-of-vocabulary token, a schema xgrammar refuses,
        # top_logprobs over the engine's bound): its first and only event is the error.
        (vllm_event(400, "token id 99999999 out of vocabulary", "logit_bias"), False, 400, "logit_bias", None, False),
        (
            vllm_event(400, "This model's maximum context length is 64 tokens."),
            False,
            400,
            None,
            "context_length_exceeded",
            False,
        ),
        (
            vllm_event(503, "The engine is currently busy", error_type="ServiceUnavailableError"),
            False,
            503,
            None,
            None,
            True,
        ),
        (
            vllm_event(500, "EngineCore encountered an issue", error_type="InternalServerError"),
            True,
            503,
            None,
            None,
            True,
        ),
        # One event split over two body messages is still one event.
        ('data: {"error": {"message": "bad regex", "type": "BadRequestError", ', False, 400, None, None, False),
    ],
)
def test_a_stream_that_fails_before_its_first_chunk_is_the_json_error_openai_answers(
    gated: GatedApp,
    openai_contract: dict,
    path: str,
    first: str,
    dead: bool,
    status: int,
    param: str | None,
    code: str | None,
    retry_after: bool,
) -> None:
    # OpenAI answers an invalid streamed request with the HTTP error and its JSON body, never a 200 stream.
    rest = ['"param": "structured_outputs.regex", "code": 400}}\n\n'] if first.endswith(", ") else []
    gated.engine.stream = [first, *rest, "data: [DONE]\n\n"]
    gated.engine.dead = dead
    body = {**(CHAT if "chat" in path else COMPLETION), "stream": True}
    answer = gated.client.post(path, json=body, headers=gated.headers("bob"))
    error = assert_clean_error(answer, status, openai_contract)
    assert answer.headers["content-length"] == str(len(answer.content))
    assert "[DONE]" not in answer.text
    assert error["param"] == (param if not rest else "structured_outputs.regex")
    assert error["code"] == code
    assert ("retry-after" in answer.headers) is retry_after
    # The same failure unstreamed gets the same answer.
    gated.engine.stream = []
    gated.engine.failure = (status if not dead else 500, "x")
    unstreamed = gated.client.post(path, json={**body, "stream": False}, headers=gated.headers("bob"))
    assert unstreamed.status_code == answer.status_code


def test_an_exception_before_a_streams_first_chunk_is_a_json_error(gated: GatedApp, openai_contract: dict) -> None:
    gated.engine.stream = [KeyError("function")]
    answer = gated.client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=gated.headers("bob"))
    assert_clean_error(answer, 400, openai_contract)


def test_a_stream_that_starts_well_passes_unchanged_and_its_later_errors_stay_events(gated: GatedApp) -> None:
    chunks = ['data: {"id": "1", "choices": []}\n\n', vllm_event(400, "late", "x"), "data: [DONE]\n\n"]
    gated.engine.stream = chunks
    with gated.client.stream(
        "POST", "/v1/chat/completions", json={**CHAT, "stream": True}, headers=gated.headers("bob")
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        received = list(answer.iter_text())
    text = "".join(received)
    assert text.startswith(chunks[0])
    assert text.endswith("data: [DONE]\n\n")
    assert json.loads(text.split("\n\n")[1][len("data: ") :])["error"]["param"] == "x"


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
    assert assert_clean_error(wrong_method, 405, openai_contract)["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/chat/completions/"),
        ("POST", "/v1/completions/"),
        ("POST", "/auth/token/"),
        ("GET", "/healthz/"),
        # A route with a path parameter: not the model "" or "allowed--x/" (vLLM answers 307 to the path without it).
        ("GET", "/v1/models/"),
        ("GET", "/v1/models/allowed--x/"),
    ],
)
def test_a_trailing_slash_is_a_404_naming_the_path_not_a_redirect(
    gated: GatedApp, openai_contract: dict, method: str, path: str
) -> None:
    # Starlette's default answered 307 with an empty body, and many clients drop a POST body on a redirect.
    answer = gated.client.request(method, path, json=CHAT, headers=gated.headers("bob"), follow_redirects=False)
    error = assert_clean_error(answer, 404, openai_contract)
    assert repr(path.rstrip("/")) in error["message"] and "trailing slash" in error["message"]
    assert gated.engine.received == []


@pytest.mark.parametrize(
    "content_type",
    [None, "application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x", "application/jsonl"],
)
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_a_body_not_declared_json_is_openais_unsupported_content_type(
    gated: GatedApp, openai_contract: dict, path: str, content_type: str | None
) -> None:
    # curl -d sends application/x-www-form-urlencoded; vLLM answered "1 validation error: Unsupported Media Type".
    headers = {**gated.headers("bob"), **({"Content-Type": content_type} if content_type else {})}
    answer = gated.client.post(path, content=json.dumps(CHAT if "chat" in path else COMPLETION), headers=headers)
    error = assert_clean_error(answer, 400, openai_contract)
    assert error["code"] == "unsupported_content_type"
    assert (content_type or "no Content-Type header") in error["message"] and "application/json" in error["message"]
    assert "validation error" not in error["message"]
    assert gated.engine.received == []


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON"])
def test_json_with_parameters_or_in_capitals_is_json(gated: GatedApp, content_type: str) -> None:
    headers = {**gated.headers("bob"), "Content-Type": content_type}
    assert gated.client.post("/v1/chat/completions", content=json.dumps(CHAT), headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("path", "raw", "param"),
    [
        ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "\\ud800"}]}', "messages.0.content"),
        (
            "/v1/chat/completions",
            '{"messages": [{"role": "user", "content": [{"type": "text", "text": "a\\udfffb"}]}]}',
            "messages.0.content.0.text",
        ),
        ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "hi"}], "stop": ["\\udc00"]}', "stop.0"),
        ("/v1/completions", '{"prompt": "x\\ud83d"}', "prompt"),
        ("/v1/completions", '{"prompt": "hi", "logit_bias": {"\\ud800": 1}}', "logit_bias"),
    ],
)
def test_a_lone_surrogate_is_a_400_naming_the_field(
    gated: GatedApp, openai_contract: dict, path: str, raw: str, param: str
) -> None:
    body = json.loads(raw)
    body["model"] = SERVED_MODEL
    text = json.dumps(body, ensure_ascii=True)
    headers = {**gated.headers("bob"), "Content-Type": "application/json"}
    error = assert_clean_error(gated.client.post(path, content=text, headers=headers), 400, openai_contract)
    assert error["param"] == param
    assert "Unicode" in error["message"] and "TextEncodeInput" not in error["message"]
    assert gated.engine.received == []


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-32"])
def test_a_body_in_any_encoding_json_reads_is_read_as_vllm_reads_it(
    gated: GatedApp, openai_contract: dict, encoding: str
) -> None:
    # vLLM's app reads a body with json.loads, which takes UTF-8 with a byte order mark (Windows tools write one),
    # UTF-16 and UTF-32; vllm serve answers such a body, so the gate checks it as that text, not as UTF-8 bytes.
    headers = {**gated.headers("bob"), "Content-Type": "application/json"}
    body = {**CHAT, "messages": [{"role": "user", "content": "caf\u00e9 \U0001f600"}]}
    answer = gated.client.post("/v1/chat/completions", content=json.dumps(body).encode(encoding), headers=headers)
    assert answer.status_code == 200, answer.text
    assert gated.engine.received == [body]
    wrong = json.dumps({**body, "max_tokens": "many"}).encode(encoding)
    error = assert_clean_error(
        gated.client.post("/v1/chat/completions", content=wrong, headers=headers), 400, openai_contract
    )
    assert error["param"] == "max_tokens"
    assert len(gated.engine.received) == 1


def test_a_paired_surrogate_is_text(gated: GatedApp) -> None:
    text = json.dumps({**CHAT, "messages": [{"role": "user", "content": "\U0001f600"}]}, ensure_ascii=True)
    assert "\\ud83d\\ude00" in text
    headers = {**gated.headers("bob"), "Content-Type": "application/json"}
    assert gated.client.post("/v1/chat/completions", content=text, headers=headers).status_code == 200


LONG = "vLLM's input_tokens: the prompt is over the context"


@pytest.mark.parametrize(
    ("path", "fields", "engine_says", "param", "says"),
    [
        (
            "/v1/chat/completions",
            {"n": 100000},
            (
                "n must be at most 128, got 100000. To increase this limit, set the VLLM_MAX_N_SEQUENCES environment "
                "variable.",
                None,
            ),
            "n",
            "n must be at most 128, got 100000",
        ),
        ("/v1/chat/completions", {"n": 0}, ("n must be at least 1, got 0.", None), "n", "at least 1"),
        (
            "/v1/chat/completions",
            {"presence_penalty": 5},
            ("presence_penalty must be in [-2, 2], got 5.", None),
            "presence_penalty",
            "[-2, 2]",
        ),
        (
            "/v1/chat/completions",
            {"n": 2},
            ("Set VLLM_SOMETHING to allow it. best_of must be at most 4.", None),
            None,
            "best_of must be at most 4",
        ),
        # vLLM's parameter names that are not the field the client wrote.
        (
            "/v1/chat/completions",
            {"max_completion_tokens": -5},
            ("max_tokens must be at least 1, got -5.", "max_tokens"),
            "max_completion_tokens",
            "at least 1",
        ),
        ("/v1/chat/completions", {"max_tokens": -5}, ("max_tokens must be at least 1", "max_tokens"), "max_tokens", ""),
        ("/v1/chat/completions", {}, (LONG, "input_tokens"), "messages", LONG),
        ("/v1/completions", {}, (LONG, "input_tokens"), "prompt", LONG),
    ],
)
def test_an_engine_refusal_names_the_field_the_client_wrote_and_not_the_servers_settings(
    gated: GatedApp, openai_contract: dict, path: str, fields: dict, engine_says: tuple, param: str | None, says: str
) -> None:
    gated.engine.failure = (400, *engine_says) if engine_says[1] else (400, engine_says[0])
    base = CHAT if "chat" in path else COMPLETION
    for stream in (False, True):
        answer = gated.client.post(path, json={**base, **fields, "stream": stream}, headers=gated.headers("bob"))
        error = assert_clean_error(answer, 400, openai_contract)
        assert error["param"] == param
        assert says in error["message"]
        assert "VLLM_" not in error["message"] and "environment" not in error["message"]
    gated.engine.failure = None
    gated.engine.stream = [vllm_event(400, *engine_says), "data: [DONE]\n\n"]
    streamed = gated.client.post(path, json={**base, **fields, "stream": True}, headers=gated.headers("bob"))
    assert assert_clean_error(streamed, 400, openai_contract)["param"] == param


USER = [{"role": "user", "content": "hi"}]
TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        # A union (`stop`: a string or up to 4 strings): the rule the value breaks, not the member it is not.
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4 items"),
        # A user message: told as the user message it is, not as the developer message (the union's first member).
        ({"messages": [{"role": "user", "content": None}]}, "messages.0.content", "valid string"),
        ({"messages": [{"role": "system", "content": 5}]}, "messages.0.content", "valid string"),
        ({"messages": ["hi"]}, "messages.0", "should be an object"),  # JSON's term, not Python's
        # A validator's wrapper (`function-wrap[...]`) is no part of the body's path.
        ({"response_format": {"type": "xml"}}, "response_format.type", "'json_schema'"),
        ({"messages": USER, "tools": [{"type": "function"}]}, "tools.0.function", "Field required"),
        ({"messages": USER, "temperature": "hot"}, "temperature", "valid number"),
        # OpenAI refuses a value of the wrong JSON type where the engine's lax parsing would coerce it.
        ({"messages": USER, "stream": "yes"}, "stream", "valid boolean"),
        ({"messages": USER, "logprobs": 1}, "logprobs", "valid boolean"),
        ({"messages": USER, "max_tokens": "5"}, "max_tokens", "valid integer"),
        ({"messages": USER, "max_tokens": 5.0}, "max_tokens", "valid integer"),
        ({"messages": USER, "temperature": "0.5"}, "temperature", "valid number"),
        ({"messages": USER, "stop": 5}, "stop", "valid string"),
        ({"messages": USER, "logit_bias": {"5": 100.5}}, "logit_bias.5", "from -100 to 100, not 100.5"),
        ({"messages": USER, "logit_bias": {"5": 1, "7": -101}}, "logit_bias.7", "from -100 to 100, not -101"),
        # vLLM's message union admits any role with every field optional; OpenAI does not (issue: fresh user's trial).
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role", "'wizard' is not one of"),
        ({"messages": [*USER, {"role": "Human", "content": "x"}]}, "messages.1.role", "'Human' is not one of"),
        ({"messages": [{"role": "user"}]}, "messages.0.content", "user message needs content"),
        ({"messages": [{"role": "system", "name": "x"}, *USER]}, "messages.0.content", "system message needs"),
        ({"messages": [*USER, {"role": "assistant"}]}, "messages.1.content", "assistant message needs content"),
        ({"messages": [*USER, {"role": "tool", "content": "x"}]}, "messages.1.tool_call_id", "id of the call"),
        ({"messages": [*USER, {"role": "function", "content": "x"}]}, "messages.1.name", "function message needs"),
        ({"messages": []}, "messages", "at least one message"),
        # Parts and tool calls the engine's class validates late (an Iterable; a model validator): named in the body,
        # where vLLM said "validation errors for ValidatorIterator" or named a path without the message.
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]},
            "messages.0.content.0.text",
            "valid string",
        ),
        ({"messages": [{"role": "user", "content": ["hi"]}]}, "messages.0.content.0", "should be an object"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_text", "text": "x"}]}]},
            "messages.0.content.0.type",
            "'text'",
        ),
        (
            {
                "messages": [
                    *USER,
                    {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]},
                ]
            },
            "messages.1.tool_calls.0.type",
            "Field required",
        ),
        (
            {
                "messages": [
                    *USER,
                    {
                        "role": "assistant",
                        "tool_calls": [{**TOOL_CALL, "function": {"name": "f", "arguments": {"a": 1}}}],
                    },
                ]
            },
            "messages.1.tool_calls.0.function.arguments",
            "valid string",
        ),
        (
            {
                "messages": [
                    *USER,
                    {"role": "assistant", "tool_calls": [TOOL_CALL]},
                    {"role": "tool", "content": "1", "tool_call_id": "call_1"},
                    {"role": "assistant", "tool_calls": [TOOL_CALL, {**TOOL_CALL, "id": 5}]},
                ]
            },
            "messages.3.tool_calls.1.id",
            "valid string",
        ),
    ],
)
def test_a_refused_body_names_the_field_the_client_wrote(
    gated: GatedApp, openai_contract: dict, fields: dict, param: str, says: str
) -> None:
    body = {**CHAT, **fields}
    answer = gated.client.post("/v1/chat/completions", json=body, headers=gated.headers("bob"))
    error = assert_clean_error(answer, 400, openai_contract)
    assert error["param"] == param
    assert says in error["message"]
    assert error["message"].endswith(f" at {param}")
    assert "Param" not in error["message"] and "[" not in error["param"]
    assert gated.engine.received == []


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": role, "content": "x"} for role in ("system", "developer", "user")],
        [
            *USER,
            {"role": "assistant", "tool_calls": [TOOL_CALL]},
            {"role": "tool", "content": "1", "tool_call_id": "call_1"},
        ],
        [*USER, {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]}],
        [*USER, {"role": "assistant", "content": ""}, {"role": "function", "name": "f", "content": "1"}],
    ],
)
def test_every_openai_message_role_passes_the_gate(gated: GatedApp, messages: list) -> None:
    answer = gated.client.post(
        "/v1/chat/completions", json={**CHAT, "messages": messages}, headers=gated.headers("bob")
    )
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    "content",
    [
        [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}],
        [{"image_url": "https://example.com/a.png"}],  # vLLM's own part forms
        [{"type": "audio_url", "audio_url": {"url": "https://example.com/a.wav"}}],
        [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}],  # what Anthropic-style clients add
        [],
    ],
)
def test_content_parts_the_engines_class_takes_pass_the_gate(gated: GatedApp, content: list) -> None:
    messages = [{"role": "user", "content": content}, {"role": "assistant", "content": [{"type": "text", "text": "b"}]}]
    answer = gated.client.post(
        "/v1/chat/completions", json={**CHAT, "messages": messages}, headers=gated.headers("bob")
    )
    assert answer.status_code == 200, answer.text
    assert gated.engine.received[-1]["messages"] == messages


def test_a_completion_logit_bias_out_of_openais_range_is_a_400(gated: GatedApp, openai_contract: dict) -> None:
    body = {**COMPLETION, "logit_bias": {"9": 250}}
    error = assert_clean_error(
        gated.client.post("/v1/completions", json=body, headers=gated.headers("bob")), 400, openai_contract
    )
    assert (error["param"], "not 250" in error["message"]) == ("logit_bias.9", True)
    assert gated.engine.received == []


def test_an_integer_where_a_number_is_expected_is_a_number(gated: GatedApp) -> None:
    body = {**CHAT, "temperature": 1, "top_p": 1, "presence_penalty": 0, "logit_bias": {"5": 100, "7": -100}}
    answer = gated.client.post("/v1/chat/completions", json=body, headers=gated.headers("bob"))
    assert answer.status_code == 200, answer.text
    assert gated.engine.received


def test_model_objects_follow_openais_contract(gated: GatedApp, openai_contract: dict) -> None:
    listed = gated.client.get("/v1/models", headers=gated.headers("bob")).json()
    assert contract_errors(openai_contract, "ListModelsResponse", listed) == []
    # `max_model_len` as vLLM's own model objects carry it (clients size their context window from it).
    assert listed["data"][0] == {
        "id": SERVED_MODEL,
        "object": "model",
        "created": 1_700_000_000,
        "owned_by": "lab-llm",
        "max_model_len": 64,
    }
    one = gated.client.get("/v1/models/allowed--x", headers=gated.headers("bob")).json()
    assert contract_errors(openai_contract, "Model", one) == []
    assert one == listed["data"][0]


def test_model_objects_carry_the_context_length_the_engine_serves(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The engine derives max_model_len from the model when the config gives none; its own value is the one reported.
    engine_app = FakeVLLM().app()
    models = SimpleNamespace(model_config=SimpleNamespace(max_model_len=2048))
    engine_app.state = SimpleNamespace(openai_serving_models=models)  # type: ignore[attr-defined]
    gated = build_gated_app(tmp_path, engine_app=engine_app)
    for path in ("/v1/models", "/v1/models/allowed--x"):
        answer = gated.client.get(path, headers=gated.headers("bob")).json()
        assert (answer["data"][0] if "data" in answer else answer)["max_model_len"] == 2048


def test_readiness_follows_the_engine(gated: GatedApp, openai_contract: dict) -> None:
    assert gated.client.get("/readyz").json() == {"status": "ready"}
    gated.engine.health_failure = EngineDeadError()
    answer = gated.client.get("/readyz")
    assert_clean_error(answer, 503, openai_contract)
    assert int(answer.headers["retry-after"]) >= 1
    assert gated.client.get("/healthz").json() == {"status": "ok"}  # liveness: the gate itself answers


def test_in_serves_replica_the_request_id_header_is_answered_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Serve's direct-ingress server appends `x-request-id` to every answer itself; the replica's app must not add a
    second one (clients would read `id, id`), while the id still reaches the 5xx message."""
    from fastapi.testclient import TestClient

    from lab_llm.app.server import gated_asgi_app
    from tests.unit.serve.app.gated_app import FakeVLLM, app_config

    engine = FakeVLLM(failure=(500, "boom"), dead=True)
    app, *_rest = gated_asgi_app(
        app_config(tmp_path),
        engine.app(),
        engine_health=engine.check_health,
        engine_dead=lambda: True,
        answer_request_id=False,
    )
    answer = TestClient(app).get("/v1/models", headers={"x-request-id": "rid-1"})
    assert answer.status_code == 401 and "x-request-id" not in answer.headers
    answer = TestClient(app).get("/v1/nothing", headers={"x-request-id": "rid-2"})
    assert answer.status_code == 404 and "x-request-id" not in answer.headers


# Public reports against OpenAI-compatible servers: a structured-output request vLLM refuses with the repr of its
# `StructuredOutputsParams` (`{'json': None, ..., '_backend': None}`) as the message. The answer names the field.
@pytest.mark.parametrize(
    ("fields", "param"),
    [
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "answer"}}},
            "response_format.json_schema.schema",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": None, "strict": True}}},
            "response_format.json_schema.schema",
        ),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema.schema"),
        ({"structured_outputs": {}}, "structured_outputs"),
        ({"structured_outputs": {"disable_any_whitespace": True}}, "structured_outputs"),
        ({"structured_outputs": {"json": {"type": "object"}, "regex": "[a-z]+"}}, "structured_outputs.regex"),
        (
            {"response_format": {"type": "json_object"}, "structured_outputs": {"choice": ["a", "b"]}},
            "structured_outputs.choice",
        ),
    ],
)
def test_a_refused_structured_output_names_the_field_and_no_internal_repr(
    gated: GatedApp, openai_contract: dict, fields: dict, param: str
) -> None:
    for path, body in (("/v1/chat/completions", {**CHAT, **fields}), ("/v1/completions", {**COMPLETION, **fields})):
        answer = gated.client.post(path, json=body, headers=gated.headers("bob"))
        error = assert_clean_error(answer, 400, openai_contract)
        assert error["param"] == param
        assert param in error["message"]
        for internal in ("{'", "None", "_backend", "__dict__", "StructuredOutputsParams", "(parameter="):
            assert internal not in error["message"]
    assert gated.engine.received == []


@pytest.mark.parametrize(
    ("message", "told"),
    [
        (
            "You must use one kind of structured outputs constraint but none are specified: {'json': None, "
            "'regex': None, '_backend': None, '_backend_was_auto': False}",
            "You must use one kind of structured outputs constraint but none are specified",
        ),
        ("cannot use <vllm.sampling_params.SamplingParams object at 0x7f3a> here", "cannot use"),
        ("bad value (parameter=logit_bias, value={'12': 500})", "bad value"),
        # pydantic's report on an engine-internal model: the generic message, the details in the log.
        (
            "1 validation error for SamplingParams\nn\n  Input should be greater than 0 [type=greater_than, "
            "input_value=0, input_type=int]\n    For further information visit https://errors.pydantic.dev/2/v/x",
            "the engine could not process this request",
        ),
    ],
)
def test_an_engine_message_loses_the_reprs_it_carries(
    gated: GatedApp, openai_contract: dict, message: str, told: str
) -> None:
    gated.engine.failure = (400, message)
    answer = gated.client.post("/v1/chat/completions", json=CHAT, headers=gated.headers("bob"))
    told_request_id = f"{told} (request id {answer.headers['x-request-id']})"
    assert assert_clean_error(answer, 400, openai_contract)["message"] in (told, told_request_id)
