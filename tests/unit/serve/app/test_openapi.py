"""The published OpenAPI document describes the API as it is (issue 10 item 7), and a seeded schema fuzz of the
in-process app (engine stand-in) finds no 5xx and no status the document does not list."""

from __future__ import annotations

from pathlib import Path

import schemathesis
from schemathesis.checks import not_a_server_error, status_code_conformance

from tests.unit.serve.app.contract import contract_errors
from tests.unit.serve.app.fuzz import fuzz
from tests.unit.serve.app.gated_app import SERVED_MODEL, GatedApp, build_gated_app


def test_bodies_and_error_answers_are_described(gated: GatedApp) -> None:
    document = gated.client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    for path, model in (("/v1/chat/completions", "ChatCompletionRequest"), ("/v1/completions", "CompletionRequest")):
        operation = document["paths"][path]["post"]
        assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(f"/{model}")
        assert {"400", "401", "403", "404", "429", "500", "503"} <= set(operation["responses"])
    assert "messages" in schemas["ChatCompletionRequest"]["required"]
    assert "prompt" in schemas["CompletionRequest"]["properties"]
    assert schemas["ErrorResponse"]["required"] == ["error"]
    operations = [operation for item in document["paths"].values() for operation in item.values()]
    assert all("422" not in operation["responses"] for operation in operations)
    assert "HTTPValidationError" not in schemas
    assert document["paths"]["/readyz"]["get"]["responses"]["503"]


ENGINE_ANSWERS = {
    "/v1/chat/completions": ("ChatCompletionResponse", "ChatCompletionStreamResponse"),
    "/v1/completions": ("CompletionResponse", "CompletionStreamResponse"),
}
# What vLLM writes (`model_dump_json` of its response classes): a forced tool call cut off by max_tokens, and a
# streamed chunk carrying a piece of its arguments.
CHAT_ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": SERVED_MODEL,
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call-1", "type": "function", "function": {"name": "get_weather", "arguments": '{"ci'}}
                ],
            },
            "finish_reason": "length",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}
CHAT_CHUNK = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": SERVED_MODEL,
    "choices": [
        {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "ty"}}]}, "finish_reason": None}
    ],
}


def test_the_200_answers_are_described_as_json_and_as_an_event_stream(gated: GatedApp) -> None:
    document = gated.client.get("/openapi.json").json()
    for path, (answer, chunk) in ENGINE_ANSWERS.items():
        content = document["paths"][path]["post"]["responses"]["200"]["content"]
        assert content["application/json"]["schema"]["$ref"].endswith(f"/{answer}")
        assert content["text/event-stream"]["schema"]["$ref"].endswith(f"/{chunk}")
    # The schemas have teeth: the engine's answers fit, a body that is not one does not.
    assert contract_errors(document, "ChatCompletionResponse", CHAT_ANSWER) == []
    assert contract_errors(document, "ChatCompletionStreamResponse", CHAT_CHUNK) == []
    assert contract_errors(document, "ChatCompletionResponse", {**CHAT_ANSWER, "choices": "none"})
    assert contract_errors(document, "ChatCompletionStreamResponse", {"id": "1"})
    # vLLM's request `FunctionCall` (a message's past call) and its response `FunctionCall` are different classes of
    # one name: each keeps its own schema.
    schemas = document["components"]["schemas"]
    assert {"FunctionCall-Input", "FunctionCall-Output"} <= set(schemas)


def test_the_fuzzer_finds_no_server_error_and_no_undocumented_status(tmp_path: Path) -> None:
    gated = build_gated_app(tmp_path)
    schema = schemathesis.openapi.from_asgi("/openapi.json", gated.app).include(path_regex=r"^/v1/")
    headers = gated.headers("bob")

    def call(case: schemathesis.Case) -> object:
        if isinstance(case.body, dict):
            case.body["model"] = SERVED_MODEL  # past the model check, into the engine's request validation
        return case.call(headers=headers)

    fuzzed = fuzz(
        schema,
        call,
        [not_a_server_error, status_code_conformance],
        max_examples=15,
    )
    assert {label for label in fuzzed if label.endswith("(positive)")} == {
        "GET /v1/models (positive)",
        "GET /v1/models/{model} (positive)",
        "POST /v1/completions (positive)",
        "POST /v1/chat/completions (positive)",
    }
    assert {"POST /v1/completions (negative)", "POST /v1/chat/completions (negative)"} <= set(fuzzed)
