"""What a client is told when the engine fails a request: OpenAI's error body, the right status, no internals.

The engine is vLLM's own OpenAI app, running in the same replica behind the gate. It answers failures itself, as
JSON `{"error": {"message", "type", "param", "code": <HTTP status>}}` (vLLM's `ErrorResponse`, built by
`vllm/entrypoints/serve/exception_handling/error_response.py`), or, mid-stream, as an SSE `data:` event carrying
that object. The gate rewrites every such answer (`engine_answer`):

- the engine's own 4xx: its status and its message, once; 422 and 501 become 400;
- 503 (vLLM's admission control, a retryable generation error): 503 with `Retry-After`;
- any other 5xx while the engine is alive: the request made the engine fail (a KeyError inside vLLM on a
  malformed tool, an out-of-vocabulary token id, ...): 400 with a generic message;
- any 5xx while the engine is dead or restarting (`EngineDeadError`): 503 with `Retry-After`.

An exception that escapes the engine's app (`classify`) is answered the same way, and one raised in the gate itself
is a 500 carrying the request id. Every failure is logged with the request id; a message that still looks like it
carries internals (a traceback, a path, a process or actor id, an address) is replaced by the generic one.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection, Mapping
from typing import Any

from lab_llm.app.engine_contract import EngineDeadError, VLLMClientError, VLLMNotFoundError
from lab_llm.app.errors import ApiError, error_body, internal_error_message

logger = logging.getLogger("lab_llm.app")

OVERLOAD_RETRY_AFTER_S = 2
ENGINE_DOWN_RETRY_AFTER_S = 10

# Signs that a message carries internals rather than something written for the client.
_INTERNALS = re.compile(
    r"Traceback \(most recent call last\)|File \"/|\bpid=|\bip=|\bnode_id\b|\bactor_id\b|ActorID|"
    r"ray::|\(Request ID: |Internal exception:|original exception:|site-packages|/usr/|/home/|/tmp/|/root/|"
    # pydantic's report on one of the engine's own models (its fields, input values and a documentation URL)
    r"\d+ validation errors? for [A-Z]\w*|errors\.pydantic\.dev"
)
# A Python repr inside a message (a dict, an object, a class, a dataclass such as `StructuredOutputsParams(json=...)`):
# the engine's internal state, not words for a client. The message is cut before it.
_REPR = re.compile(r"\{'\w+': |<[\w.]+ object at |<class '|\b[A-Z][A-Za-z]+\(\w+=")
# What vLLM's `VLLMValidationError.__str__` appends (vllm/exceptions.py); the parameter travels in `param`.
_VLLM_SUFFIX = re.compile(r" \((?:parameter=[^,()]*(?:, value=.*)?|value=.*)\)$", re.DOTALL)
# A sentence telling the reader to change a server setting (vLLM's `... set the VLLM_MAX_N_SEQUENCES environment
# variable`): advice for the operator, not the client; the limit itself stays in the message.
_SERVER_ADVICE = re.compile(r"[^.]*\b(?:VLLM_[A-Z0-9_]+|environment variable)\b[^.]*\.?")
# vLLM's messages that begin with the request field they are about (`n must be at most 128, got 1000`,
# `'presence_penalty' must be in [-2, 2]`): that field is the `param` when vLLM gave none.
_LEADING_FIELD = re.compile(r"'?([a-z][a-z0-9_]*)'? (?:must|should|is|cannot|can't|has|needs)\b")
_CONTEXT_LENGTH = re.compile(r"maximum context length|context length is|max_model_len", re.IGNORECASE)


def client_code(status: int, message: str) -> str | None:
    """OpenAI's string code for an engine error, where one fits."""
    if status == 400 and _CONTEXT_LENGTH.search(message):
        return "context_length_exceeded"
    if status == 404:
        return "model_not_found"
    if status == 429:
        return "rate_limit_exceeded"
    return None


def without_reprs(message: str) -> str:
    """The message without vLLM's `(parameter=..., value=...)` suffix and cut before any Python repr it carries."""
    message = _SERVER_ADVICE.sub("", _VLLM_SUFFIX.sub("", message.strip())).strip()
    found = _REPR.search(message)
    if found:
        message = message[: found.start()].rstrip(" :;,-")
    return message


def _safe(message: str, fallback: str) -> str:
    message = without_reprs(message)
    return fallback if not message or _INTERNALS.search(message) else message


# vLLM's structured-output constraints (`StructuredOutputsParams`): a request that asks for one must give exactly one.
STRUCTURED_OUTPUT_CONSTRAINTS = ("json", "regex", "choice", "grammar", "json_object", "structural_tag")
# What each `response_format.type` sets in place of the request's own `structured_outputs` field (vLLM's
# `structured_outputs_from_response_format`).
_RESPONSE_FORMAT_SETS = {"json_schema": "json", "json_object": "json_object", "structural_tag": "structural_tag"}


def structured_output_problem(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(message, param) naming the field the client wrote when its structured-output constraints are not exactly
    one (vLLM refuses that with its parameters' repr, `StructuredOutputsParams.__post_init__`); else None."""
    outputs = body.get("structured_outputs")
    given = {
        name: f"structured_outputs.{name}"
        for name in STRUCTURED_OUTPUT_CONSTRAINTS
        if isinstance(outputs, Mapping) and outputs.get(name) is not None
    }
    response_format = body.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    if kind == "json_schema":
        json_schema = response_format.get("json_schema") if isinstance(response_format, Mapping) else None
        if not isinstance(json_schema, Mapping) or json_schema.get("schema") is None:
            param = "response_format.json_schema.schema"
            return (
                f'invalid request: {param} is required when response_format.type is "json_schema" '
                "(the JSON Schema the answer must follow)",
                param,
            )
        given["json"] = "response_format.json_schema.schema"
    elif kind in _RESPONSE_FORMAT_SETS:
        given[_RESPONSE_FORMAT_SETS[str(kind)]] = "response_format"
    if len(given) > 1:
        fields = sorted(given.values())
        return (
            f"invalid request: give one structured output constraint, not {' and '.join(fields)}",
            fields[-1],
        )
    if not given and isinstance(outputs, Mapping):
        return (
            "invalid request: structured_outputs needs one of " + ", ".join(STRUCTURED_OUTPUT_CONSTRAINTS),
            "structured_outputs",
        )
    return None


def client_problem(error: BaseException, body: Mapping[str, Any]) -> tuple[str, str | None]:
    """(message, param) for a `VLLMClientError` raised on the client's body before the engine ran: the field the
    client wrote, and vLLM's words without the reprs of its internal objects."""
    parameter = getattr(error, "parameter", None)
    param = parameter if isinstance(parameter, str) else None
    if param is None or param.startswith(("response_format", "structured_outputs")):
        problem = structured_output_problem(body)
        if problem is not None:
            return problem
    text = without_reprs(str(error.args[0]) if error.args else str(error)).rstrip(".") or "the request is not valid"
    param = param_of(text, body, param)
    return f"invalid request: {text}" + (f" at {param}" if param else ""), param


def engine_down(request_id: str) -> ApiError:
    return ApiError(
        503,
        f"the engine is not available right now (restarting); retry later (request id {request_id})",
        headers={"Retry-After": str(ENGINE_DOWN_RETRY_AFTER_S)},
    )


# vLLM's `parameter` names that are not the field the client wrote: its sampling parameter `max_tokens` is set from
# the request's `max_completion_tokens` too, and a prompt over the context is `input_tokens` (renderers/params.py).
_PARAM_WRITTEN_AS = {"max_tokens": ("max_completion_tokens",), "input_tokens": ("messages", "prompt")}


def param_of(message: str, fields: Collection[str], param: str | None = None) -> str | None:
    """The request field at fault as the client wrote it: vLLM's `param`, or the one its name stands for among the
    `fields` the client wrote (`input_tokens` is `messages` or `prompt`, `max_tokens` is `max_completion_tokens`
    when the request has it: vLLM takes that over `max_tokens`); without one, the field the message begins
    with when the client wrote it (`n must be at most 128`)."""
    if param is not None:
        # vLLM uses `max_completion_tokens` over `max_tokens` when a request has both: the alias first.
        return next((name for name in _PARAM_WRITTEN_AS.get(param, ()) if name in fields), param)
    found = _LEADING_FIELD.match(message.strip())
    return found.group(1) if found and found.group(1) in fields else None


def engine_answer(
    status: int,
    message: str,
    request_id: str,
    *,
    engine_dead: bool = False,
    param: str | None = None,
    fields: Collection[str] = (),
) -> ApiError:
    """The engine's own error answer (vLLM's status, message and `param`, the request field at fault), as a client
    may see it. `fields` are the request's top-level fields: a message that begins with one names it as `param`
    when vLLM gave none."""
    generic = f"the engine could not process this request (request id {request_id})"
    if status >= 500 and engine_dead:
        logger.error("request %s: the engine is dead (%s: %s)", request_id, status, message)
        return engine_down(request_id)
    if status in (408, 503):
        # vLLM's admission control or a retryable generation error (503); a timeout (408): retry later.
        logger.warning("request %s: the engine answered %s: %s", request_id, status, message)
        busy = _safe(message, "the engine is busy; retry later")
        return ApiError(
            503,
            busy if status == 503 else "the engine did not answer in time; retry later",
            headers={"Retry-After": str(OVERLOAD_RETRY_AFTER_S)},
        )
    if status >= 500 and status != 501:
        # vLLM turns an exception its handler did not expect into a 500; on a live engine it was this request's.
        logger.warning("request %s: the engine failed on the request (%s): %s", request_id, status, message)
        return ApiError(400, generic)
    # 422 (vLLM's unprocessable entity) and 501 (a feature this engine lacks) are the request's fault: 400.
    logger.info("request %s refused by the engine (%s): %s", request_id, status, message)
    status = status if 400 <= status < 500 and status != 422 else 400
    message = _safe(message, generic)
    param = param_of(message, fields, param)
    return ApiError(status, message, param=param, code=client_code(status, message))


def engine_error_of(status: int, raw: bytes) -> tuple[int, str, str | None]:
    """(status, message, param) of an engine error body; vLLM puts the HTTP status in `error.code`."""
    param = None
    try:
        error = json.loads(raw)["error"]
        message = str(error.get("message", ""))
        param = error.get("param") if isinstance(error.get("param"), str) else None
        code = error.get("code")
        if isinstance(code, int) and 400 <= code < 600:
            status = code
    except (ValueError, KeyError, TypeError, AttributeError):
        message = ""
    return status, message, param


def classify(error: BaseException, request_id: str, *, engine_dead: bool = False) -> ApiError:
    """The answer for an exception that escaped the engine's app while it handled a request."""
    if isinstance(error, ApiError):
        return error
    if engine_dead or isinstance(error, EngineDeadError):
        logger.error("request %s: the engine is not available", request_id, exc_info=error)
        return engine_down(request_id)
    generic = f"the engine could not process this request (request id {request_id})"
    if isinstance(error, VLLMClientError):
        logger.info("request %s refused by the engine: %s", request_id, error)
        status = 404 if isinstance(error, VLLMNotFoundError) else 400
        message = _safe(str(error), generic)
        return ApiError(status, message, code=client_code(status, message))
    if isinstance(error, ValueError | TypeError | KeyError | IndexError):
        logger.warning("request %s: the engine failed on the request", request_id, exc_info=error)
        return ApiError(400, generic)
    logger.error("request %s failed", request_id, exc_info=error)
    return ApiError(500, internal_error_message(request_id))


def error_event(answer: ApiError) -> str:
    return "data: " + json.dumps(error_body(answer.status_code, answer.message, param=answer.param, code=answer.code))


def rewrite_error_events(text: str, request_id: str, *, engine_dead: bool = False, fields: Collection[str] = ()) -> str:
    """SSE text whose `data:` error events are rewritten to OpenAI's body; other lines pass unchanged."""
    if 'data: {"error"' not in text:
        return text
    lines = []
    for line in text.split("\n"):
        if line.startswith('data: {"error"'):
            status, message, param = engine_error_of(400, line[len("data: ") :].encode())
            answer = engine_answer(status, message, request_id, engine_dead=engine_dead, param=param, fields=fields)
            line = error_event(answer)
        lines.append(line)
    return "\n".join(lines)
