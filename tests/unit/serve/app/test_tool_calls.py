"""A forced tool call cut off by max_tokens: the non-streamed answer is the streamed one (issue 10).

vLLM's own hermes parser and the tiny model's tokenizer, no engine: every cut of a forced call's envelope is parsed
the non-streamed way (`Parser.parse`, through `forced_call_parser`) and streamed token by token
(`Parser.parse_delta`, as vLLM's streaming path feeds it); both must give the same calls and the same content.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from lab_llm import tiny_model
from lab_llm.app.engine_contract import ChatCompletionRequest
from lab_llm.app.tool_calls import answer_cut_off_calls_as_streamed, forced_call_parser, joined_calls

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city", "unit"],
        },
    },
}
# What the structural tag makes the model write for a forced call (hermes); cut anywhere by max_tokens.
ENVELOPE = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}\n</tool_call>'
CHOICES = [{"type": "function", "function": {"name": "get_weather"}}, "required"]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    model_dir = Path(os.environ.get("LAB_LLM_MODEL_DIR", Path.home() / ".cache/lab-llm/models/tiny-llama"))
    tiny_model.build(model_dir)
    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def hermes(tokenizer: Any) -> type:
    from vllm.parser import ParserManager

    parser_cls = ParserManager.get_parser(tool_parser_name="hermes", enable_auto_tools=True, tokenizer=tokenizer)
    assert parser_cls is not None
    return parser_cls


def request_for(choice: Any) -> Any:
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": messages, "tools": [WEATHER], "tool_choice": choice}
    )


def streamed(parser_cls: type, tokenizer: Any, request: Any, output: str) -> tuple[str | None, list[tuple[str, str]]]:
    """(content, [(name, arguments)]) as vLLM's streaming path sends them: one `parse_delta` per token."""
    encoded = tokenizer(output, add_special_tokens=False, return_offsets_mapping=True)
    parser = parser_cls(tokenizer, request.tools)
    content, deltas = "", []
    pieces = list(zip(encoded["input_ids"], encoded["offset_mapping"], strict=True))
    for position, (token_id, (start, end)) in enumerate(pieces):
        delta = parser.parse_delta(
            output[start:end], [token_id], request, prompt_token_ids=[], finished=position == len(pieces) - 1
        )
        if delta is not None:
            content += delta.content or ""
            deltas += delta.tool_calls or []
    return content or None, [(call.name, call.arguments) for call in joined_calls(deltas)]


def whole(parser_cls: type, tokenizer: Any, request: Any, output: str) -> tuple[str | None, list[tuple[str, str]]]:
    """(content, [(name, arguments)]) as vLLM's non-streamed path gets them from `Parser.parse`."""
    parser = parser_cls(tokenizer, request.tools)
    parser.set_prompt_token_ids([])
    ids = tokenizer(output, add_special_tokens=False)["input_ids"]
    _reasoning, content, calls = parser.parse(output, request, enable_auto_tools=True, model_output_token_ids=ids)
    return content or None, [(call.name, call.arguments) for call in calls or []]


@pytest.mark.parametrize("choice", CHOICES, ids=["named", "required"])
def test_every_cut_of_a_forced_call_answers_as_the_stream(hermes: type, tokenizer: Any, choice: Any) -> None:
    request = request_for(choice)
    forced = forced_call_parser(hermes)
    cuts = range(1, len(ENVELOPE) + 1)
    disagreements = [
        (
            ENVELOPE[:cut],
            whole(forced, tokenizer, request, ENVELOPE[:cut]),
            streamed(hermes, tokenizer, request, ENVELOPE[:cut]),
        )
        for cut in cuts
        if whole(forced, tokenizer, request, ENVELOPE[:cut]) != streamed(hermes, tokenizer, request, ENVELOPE[:cut])
    ]
    assert disagreements == []
    # A cut inside the arguments: the call with its partial arguments, never the raw envelope as content.
    cut = ENVELOPE[: ENVELOPE.index("Paris") + 3]
    content, calls = whole(forced, tokenizer, request, cut)
    assert content is None
    assert calls == [("get_weather", '{"city": "Par')]
    # Before the name is complete there is no call, and no envelope markup as content.
    assert whole(forced, tokenizer, request, ENVELOPE[:14]) == (None, [])
    # A whole call is parsed by vLLM itself, unchanged.
    assert whole(forced, tokenizer, request, ENVELOPE) == whole(hermes, tokenizer, request, ENVELOPE)
    assert json.loads(whole(forced, tokenizer, request, ENVELOPE)[1][0][1]) == {"city": "Paris", "unit": "c"}


def test_a_request_that_does_not_force_a_call_is_parsed_as_vllm_parses_it(hermes: type, tokenizer: Any) -> None:
    forced = forced_call_parser(hermes)
    for choice in ("auto", "none"):
        request = request_for(choice)
        for output in ("Sunny today.", ENVELOPE[:30]):
            assert whole(forced, tokenizer, request, output) == whole(hermes, tokenizer, request, output)


def test_it_is_installed_only_where_a_tool_parser_runs(hermes: type) -> None:
    class State:
        def __init__(self, parser_cls: type | None) -> None:
            self.openai_serving_chat = type("Serving", (), {"parser_cls": parser_cls})()

    class App:
        def __init__(self, parser_cls: type | None) -> None:
            self.state = State(parser_cls)

    with_parser, without = App(hermes), App(None)
    assert answer_cut_off_calls_as_streamed(with_parser) is True
    assert issubclass(with_parser.state.openai_serving_chat.parser_cls, hermes)
    assert answer_cut_off_calls_as_streamed(without) is False
    assert without.state.openai_serving_chat.parser_cls is None
