"""A forced tool call cut off by `max_tokens` is answered the same way streamed or not, as OpenAI answers it.

With `tool_choice` naming a function or `"required"`, vLLM 0.32 forces the call's envelope through structured output
(the tool parser's structural tag; hermes: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`). When
`max_tokens` cuts the call off, vLLM's non-streamed path (`OpenAIServingChat.chat_completion_full_generator` →
`Parser.parse`) parses the whole output as a finished call, fails, and answers the raw envelope as `content` with no
`tool_calls`; its streamed path (`Parser.parse_delta`) has sent the call's id, name and arguments so far as
`tool_calls` deltas. OpenAI answers a cut-off call with `finish_reason: "length"` and the call with its partial
arguments (not valid JSON), streamed or not.

`forced_call_parser` gives the non-streamed path the streamed path's answer: when a forced call's whole output yields
no call, the output is replayed through a fresh parser of the same class and options, by its streaming method (all
but the last token, then the last token with `finished`, as the stream ends), and the tool-call deltas are joined
into calls. So, streamed or not: `finish_reason` `"length"` (vLLM keeps it for a
forced call that did not stop), the call with its id, name and partial arguments once its name is complete; before
that no call and no envelope markup as content. An output that parses as calls is answered by vLLM unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from lab_llm.app.engine_contract import ChatCompletionNamedToolChoiceParam, FunctionCall, chat_serving

logger = logging.getLogger("lab_llm.app")


def forces_a_call(request: Any) -> bool:
    """Whether the request's `tool_choice` forces a tool call: a named function or `"required"`."""
    choice = getattr(request, "tool_choice", None)
    return choice == "required" or isinstance(choice, ChatCompletionNamedToolChoiceParam)


def joined_calls(deltas: Iterable[Any]) -> list[FunctionCall]:
    """Streamed tool-call deltas (`DeltaToolCall`: `index`, `id`, `function.name`, `function.arguments` pieces) joined
    into whole calls, by index; a call whose name never came is left out."""
    calls: dict[int, dict[str, Any]] = {}
    for delta in deltas:
        call = calls.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
        call["id"] = call["id"] or delta.id
        function = delta.function
        if function is None:
            continue
        name = function.get("name") if isinstance(function, dict) else function.name
        arguments = function.get("arguments") if isinstance(function, dict) else function.arguments
        call["name"] = call["name"] or name
        call["arguments"] += arguments or ""
    return [FunctionCall(**call) for _index, call in sorted(calls.items()) if call["name"]]


def forced_call_parser(parser_cls: type) -> type:
    """A subclass of vLLM's `Parser` class `parser_cls` whose `parse` (the non-streamed path) answers a forced call
    that does not parse whole as its `parse_delta` (the streamed path) does; see the module's docstring."""

    class ForcedCallParser(parser_cls):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._lab_llm_construction = (args, kwargs)
            self._lab_llm_prompt_token_ids: list[int] = []

        def set_prompt_token_ids(self, prompt_token_ids: Sequence[int]) -> None:
            self._lab_llm_prompt_token_ids = list(prompt_token_ids)
            super().set_prompt_token_ids(prompt_token_ids)

        def parse(
            self,
            model_output: str,
            request: Any,
            enable_auto_tools: bool = False,
            model_output_token_ids: Sequence[int] = (),
        ) -> tuple[str | None, str | None, list[FunctionCall] | None]:
            reasoning, content, tool_calls = super().parse(
                model_output,
                request,
                enable_auto_tools=enable_auto_tools,
                model_output_token_ids=model_output_token_ids,
            )
            if tool_calls or not forces_a_call(request):
                return reasoning, content, tool_calls
            args, kwargs = self._lab_llm_construction
            replay = parser_cls(*args, **kwargs)
            content, deltas = "", list[Any]()
            for text, token_ids, finished in self._as_streamed(model_output, list(model_output_token_ids), request):
                delta = replay.parse_delta(text, token_ids, request, self._lab_llm_prompt_token_ids, finished=finished)
                if delta is not None:
                    content += delta.content or ""
                    deltas += delta.tool_calls or []
            return reasoning, content or None, joined_calls(deltas)

        def _as_streamed(self, output: str, token_ids: list[int], request: Any) -> list[tuple[str, list[int], bool]]:
            """The output as the streamed path last sees it: everything but the last token, then the last token with
            `finished` (its finishing step acts on what that delta holds). Without token ids: all, then nothing."""
            if len(token_ids) > 1:
                skip_special_tokens = getattr(request, "skip_special_tokens", True)
                head = self.model_tokenizer.decode(token_ids[:-1], skip_special_tokens=skip_special_tokens)
                if output.startswith(head):
                    return [(head, token_ids[:-1], False), (output[len(head) :], token_ids[-1:], True)]
            return [(output, token_ids, False), ("", [], True)]

    ForcedCallParser.__name__ = ForcedCallParser.__qualname__ = f"ForcedCall{parser_cls.__name__}"
    return ForcedCallParser


def answer_cut_off_calls_as_streamed(engine_app: Any) -> bool:
    """Install `forced_call_parser` in vLLM's built app (its chat handler's `parser_cls`). Returns whether it did:
    not when the engine has no tool parser (no forced call is parsed then)."""
    serving = chat_serving(engine_app)
    parser_cls = getattr(serving, "parser_cls", None)
    if parser_cls is None or getattr(parser_cls, "tool_parser_cls", None) is None:
        return False
    serving.parser_cls = forced_call_parser(parser_cls)
    logger.info("forced tool calls cut off by max_tokens are answered as streamed (%s)", parser_cls.__name__)
    return True
