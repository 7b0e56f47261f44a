"""The gate as pure ASGI middleware around vLLM's own OpenAI app, in the engine's replica (one hop: HAProxy → here).

Default-deny: the engine's app is called for exactly two routes, `POST /v1/chat/completions` and
`POST /v1/completions`, and only after the gate let the request through. Every other request goes to the gate's
own FastAPI app (`routes.gate_router`: models filtered by role, login, API keys, liveness, readiness, metrics,
the OpenAPI document), which answers 404 in OpenAI's format for any path it does not publish. So vLLM's other
routes (tokenize, embeddings, responses, pooling, its unauthenticated /metrics, ...) are never reached.

For a chat or completion request, in this order, each refusal an OpenAI error body:
credential (401) and scope (403); the replica's bound on requests in flight (503 + Retry-After, at once); the body
read once as a JSON object of at most 64 levels (400); the model that will serve it (404 not served, 403 not the
role's); the body validated with the engine's own request class, its structured-output constraint derived as the
engine will (400, naming the field the client wrote). Then the body is replayed to vLLM's app,
and its answer relayed: a non-2xx answer is rewritten (`engine_errors.engine_answer`), as is a stream whose first
event is an error (answered as the same JSON error, OpenAI's status, no stream) and every later error event of a
stream; the stream itself passes through chunk by chunk, unbuffered after its first event. Pure ASGI, not
`BaseHTTPMiddleware`, so a stream costs no extra task and no memory channel.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lab_llm.app.engine_contract import (
    ChatCompletionRequest,
    CompletionRequest,
    VLLMClientError,
    structured_outputs_of,
)
from lab_llm.app.engine_errors import (
    OVERLOAD_RETRY_AFTER_S,
    classify,
    client_problem,
    engine_answer,
    engine_error_of,
    error_event,
    rewrite_error_events,
)
from lab_llm.app.errors import (
    ApiError,
    api_error_json,
    has_trailing_slash,
    internal_error_message,
    no_such_route,
    validation_problem,
)
from lab_llm.app.security import Gate, bearer_of, check_model_allowed, json_text, model_of, parse_json_object

logger = logging.getLogger("lab_llm.app")

# The engine routes lab-llm publishes: path -> (scope the caller needs, the engine's request class).
ENGINE_ROUTES: dict[str, tuple[str, type[BaseModel]]] = {
    "/v1/chat/completions": ("chat", ChatCompletionRequest),
    "/v1/completions": ("completions", CompletionRequest),
}


def check_content_type(scope: Scope) -> None:
    """A 400 (OpenAI's answer, code `unsupported_content_type`) unless the body is declared JSON: the media type
    before any `;` parameters is `application/json`, the rule vLLM's app applies (`validate_json_request`)."""
    declared = next((value for name, value in scope["headers"] if name == b"content-type"), b"").decode("latin-1")
    if declared.lower().split(";", 1)[0] != "application/json":
        said = f"the header 'Content-Type: {declared[:128]}'" if declared else "no Content-Type header"
        raise ApiError(
            400,
            f"unsupported content type: this endpoint accepts only 'application/json' request bodies, but the request "
            f"sent {said}; send 'Content-Type: application/json'",
            code="unsupported_content_type",
        )


def unencodable_path(node: Any, path: tuple[str, ...] = ()) -> str | None:
    """The body's path (`messages.0.content`) of the first string, or object key, that is not valid Unicode text (a
    lone UTF-16 surrogate such as JSON's `"\\ud800"`, which Python's JSON parser admits and no tokenizer encodes);
    None when every string is valid. The body was parsed as at most 64 levels deep."""
    if isinstance(node, str):
        try:
            node.encode("utf-8")
        except UnicodeEncodeError:
            return ".".join(path) or "body"
        return None
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        if isinstance(key, str) and unencodable_path(key) is not None:
            return ".".join(path) or "body"
        found = unencodable_path(child, (*path, str(key)))
        if found is not None:
            return found
    return None


def validated(model: type[BaseModel], body: dict[str, Any], raw: bytes) -> None:
    """Check the body (`raw`, parsed as `body`) with the engine's request class and derive its structured-output
    constraint as the engine will (`engine_contract.structured_outputs_of`), or a 400 naming the bad field; never an
    exception.

    The check is pydantic's strict JSON mode: a value of the wrong JSON type (`"stream": "yes"`, `"max_tokens": 1.5`
    or `"1"`) is refused as OpenAI refuses it, where the engine's own lax parsing would coerce it; an integer where a
    number is expected stays valid."""
    bad_text = unencodable_path(body)
    if bad_text is not None:
        raise ApiError(
            400,
            f"invalid request: the string at {bad_text} is not valid Unicode text (it holds an unpaired UTF-16 "
            "surrogate such as \\ud800)",
            param=None if bad_text == "body" else bad_text,
        )
    try:
        request = model.model_validate_json(json_text(raw), strict=True)
        if model is ChatCompletionRequest:
            check_messages(body["messages"])
            check_message_parts(request.messages)  # type: ignore[attr-defined]
        check_logit_bias(body.get("logit_bias"))
        structured_outputs_of(request)  # type: ignore[arg-type]
    except ApiError:
        raise
    except (ValidationError, MessageItemsRefused) as error:
        if isinstance(error, MessageItemsRefused):
            problems = error.problems
        else:
            problems = tool_call_problems_located(error.errors(include_url=False, include_input=False), body)
        message, param = validation_problem(problems, body)
        raise ApiError(400, message, param=param) from None
    except VLLMClientError as error:
        # vLLM's own validators say what is wrong (and often which parameter); its reprs are cut (client_problem).
        message, param = client_problem(error, body)
        raise ApiError(400, message, param=param) from None
    except Exception:
        # A validator of the engine's class that raised something else on this body (TypeError, KeyError, ...).
        logger.info("request body refused by the engine's request class", exc_info=True)
        raise ApiError(400, f"invalid request: the body is not a valid {model.__name__}") from None


class MessageItemsRefused(ValueError):
    """A message's lazily validated items refused: pydantic's problems, each `loc` a path in the body."""

    def __init__(self, problems: list[Any]) -> None:
        super().__init__("a message's items are not valid")
        self.problems = problems


# pydantic's words for a wrong type in Python mode, as its JSON mode says them.
_JSON_TERMS = {"dict_type": "Input should be an object", "list_type": "Input should be a valid array"}


def check_message_parts(messages: Any) -> None:
    """Validate what the request class leaves for later: vLLM's message types declare a message's `content` parts as
    an `Iterable`, which pydantic validates only when vLLM iterates it while rendering the prompt (then vLLM answers
    400 with pydantic's report on a `ValidatorIterator`, no field named). Iterating each one here refuses such a part
    as the request's own class would, with `param` `messages.N.content.M.<field>`."""
    for index, message in enumerate(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict):
            continue
        for field, value in message.items():
            if isinstance(value, Iterator):  # pydantic's ValidatorIterator: validated as it is consumed
                try:
                    message[field] = list(value)
                except ValidationError as error:
                    located = [
                        {
                            **problem,
                            "loc": ("messages", index, field, *problem["loc"]),
                            # Iterated as Python objects: told in JSON's terms, as the rest of the body is.
                            "msg": _JSON_TERMS.get(problem["type"], problem["msg"]),
                        }
                        for problem in error.errors(include_url=False, include_input=False)
                    ]
                    raise MessageItemsRefused(located) from None


def tool_call_problems_located(problems: list[Any], body: dict[str, Any]) -> list[Any]:
    """`problems` with the path of a refused tool call in the body. vLLM's request class validates an assistant
    message's `tool_calls` in a model validator (`_materialize_tool_calls_after`), so pydantic reports them relative
    to that list (`0.ChatCompletionMessageFunctionToolCallParam.type`) without the message they are in; the first
    message whose calls the class refuses alone is that message (the validator goes through them in order)."""
    if not any(problem.get("loc") and isinstance(problem["loc"][0], int) for problem in problems):
        return problems
    for index, message in enumerate(body.get("messages") or []):
        if not isinstance(message, dict) or message.get("tool_calls") is None:
            continue
        try:
            ChatCompletionRequest.model_validate_json(json.dumps({"messages": [message]}), strict=True)
        except ValidationError as error:
            relative = [
                {**problem, "loc": ("messages", index, "tool_calls", *problem["loc"])}
                for problem in error.errors(include_url=False, include_input=False)
                if problem.get("loc") and isinstance(problem["loc"][0], int)
            ]
            if relative:
                return relative
    return problems


# OpenAI's message roles (`ChatCompletionMessageParam` of openai/openai-openapi). vLLM's message union also admits
# any other role with every field optional (`CustomChatCompletionMessageParam`, for models with roles of their own);
# OpenAI refuses those, and a message without the fields its role needs, with a 400 naming the field.
MESSAGE_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# The fields each role needs beside `role` (OpenAI's message schemas): an assistant message may leave out `content`
# when it carries `tool_calls` (or the older `function_call`).
_MESSAGE_NEEDS = {
    "system": ("content",),
    "developer": ("content",),
    "user": ("content",),
    "assistant": (),
    "tool": ("content", "tool_call_id"),
    "function": ("content", "name"),
}


# OpenAI's range for a logit_bias value (CreateChatCompletionRequest / CreateCompletionRequest of
# openai/openai-openapi: "an associated bias value from -100 to 100"); vLLM clamps values beyond it silently.
LOGIT_BIAS_RANGE = (-100.0, 100.0)


def check_logit_bias(logit_bias: Any) -> None:
    """Refuse a `logit_bias` value outside OpenAI's -100..100 (`ApiError` 400, `param` `logit_bias.<token id>`);
    its types were checked by the engine's request class before."""
    low, high = LOGIT_BIAS_RANGE
    for token, bias in (logit_bias or {}).items():
        if not low <= bias <= high:
            param = f"logit_bias.{token}"
            raise ApiError(
                400, f"invalid request: a logit_bias value must be from -100 to 100, not {bias} at {param}", param=param
            )


def check_messages(messages: Any) -> None:
    """Refuse chat messages OpenAI refuses but vLLM's message union admits: none at all (`param` `messages`), a role
    OpenAI does not have, or a message without a field its role needs (`ApiError` 400, `param` `messages.N.<field>`)."""
    if messages == []:
        raise ApiError(400, "invalid request: messages must hold at least one message at messages", param="messages")
    for index, message in enumerate(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role not in _MESSAGE_NEEDS:
            param = f"messages.{index}.role"
            roles = ", ".join(repr(name) for name in MESSAGE_ROLES)
            raise ApiError(400, f"invalid request: {str(role)[:64]!r} is not one of {roles} at {param}", param=param)
        needed = list(_MESSAGE_NEEDS[role])
        if role == "assistant" and not (message.get("tool_calls") or message.get("function_call")):
            needed.append("content")
        for field in needed:
            if message.get(field) is None:
                param = f"messages.{index}.{field}"
                what = (
                    "a tool message needs the id of the call it answers"
                    if field == "tool_call_id"
                    else (f"{'an' if role == 'assistant' else 'a'} {role} message needs {field}")
                )
                raise ApiError(400, f"invalid request: {what} at {param}", param=param)


class GateMiddleware:
    """ASGI app: the gate in front of vLLM's app (`engine_app`); everything but the engine routes to `gate_app`.

    `max_in_flight` bounds the engine requests this replica holds (running plus waiting in the engine); beyond it a
    request is refused at once with 503 and `Retry-After`. `engine_dead()` says whether the engine has died (its
    5xx answers are then a 503 with `Retry-After`, not the request's fault).
    """

    def __init__(
        self,
        engine_app: ASGIApp,
        gate_app: ASGIApp,
        gate: Gate,
        *,
        max_in_flight: int,
        engine_dead: Callable[[], bool] = lambda: False,
    ) -> None:
        self.engine_app = engine_app
        self.gate_app = gate_app
        self.gate = gate
        self.max_in_flight = max_in_flight
        self.engine_dead = engine_dead
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.engine_app(scope, receive, send)  # vLLM's app starts and stops its own background tasks
            return
        request_id = str(scope.get("state", {}).get("request_id", ""))  # set by errors.RequestIdMiddleware
        if scope["type"] == "http" and has_trailing_slash(scope.get("path", "")):
            # Before any route: `/v1/models/` must not reach `/v1/models/{model}` as the model "" (nor
            # `/v1/models/tiny-llama/` as the model "tiny-llama/"); every path has one spelling.
            await api_error_json(request_id, no_such_route(scope["path"]))(scope, receive, send)
            return
        route = ENGINE_ROUTES.get(scope.get("path", "")) if scope["type"] == "http" else None
        if route is None or scope.get("method") != "POST":
            await self.gate_app(scope, receive, send)
            return
        try:
            body, fields = await self._admit(scope, receive, *route)
        except ApiError as error:
            await api_error_json(request_id, error)(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self._relay(scope, receive, send, body, request_id, fields)
        finally:
            self.in_flight -= 1

    async def _admit(
        self, scope: Scope, receive: Receive, needed_scope: str, request_class: type[BaseModel]
    ) -> tuple[bytes, frozenset[str]]:
        """The raw body of a request the gate lets through and its top-level fields; else the ApiError refusing it."""
        authorization = next((value for name, value in scope["headers"] if name == b"authorization"), None)
        principal = self.gate.authorize(bearer_of(authorization), (needed_scope,))
        if self.in_flight >= self.max_in_flight:
            raise ApiError(
                503, "the server is at capacity; retry later", headers={"Retry-After": str(OVERLOAD_RETRY_AFTER_S)}
            )
        check_content_type(scope)
        raw = await read_body(receive)
        body = parse_json_object(raw)
        check_model_allowed(principal, self.gate.model_to_serve(model_of(body)))
        validated(request_class, body, raw)
        return raw, frozenset(body)

    async def _relay(
        self, scope: Scope, receive: Receive, send: Send, body: bytes, request_id: str, fields: frozenset[str]
    ) -> None:
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # the client's disconnect, for vLLM to abort the request

        relay = _Relay(send, request_id, self.engine_dead, fields)
        try:
            await self.engine_app(scope, replay, relay.send)
        except Exception as error:
            await relay.failed(error, scope, receive)


class _Relay:
    """The engine's answer on its way out: a 2xx passes unchanged (streams chunk by chunk, error events rewritten);
    a non-2xx is collected and answered in OpenAI's format.

    A stream's `http.response.start` is held until its first SSE event: vLLM sends that event when the request's
    first output arrives (so holding costs the first token nothing), and when the request fails before any output
    (an out-of-vocabulary token id, a schema the structured-output backend refuses, ...) that event is an error.
    OpenAI answers such a request with the error's status and JSON body before any stream, so the gate does too:
    the held start is dropped and the error is answered as the non-streamed path answers it. Only that first event
    is buffered; an error after the first normal event stays an error event of the stream.
    """

    def __init__(
        self, send: Send, request_id: str, engine_dead: Callable[[], bool], fields: frozenset[str] = frozenset()
    ) -> None:
        self._send = send
        self.fields = fields  # the request's top-level fields (`engine_answer` names one as `param`)
        self.request_id = request_id
        self.engine_dead = engine_dead
        self.start: Message | None = None
        self.error_chunks: list[bytes] | None = None
        self.streaming = False
        self.finished = False
        self.held: bytes | None = None  # a stream's first bytes while its start is held, until its first event
        self.dropped = False  # the stream was answered as a JSON error; what the engine sends after is dropped

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            if message["status"] >= 400:
                self.error_chunks = []
                return
            headers = dict(message.get("headers") or [])
            self.streaming = headers.get(b"content-type", b"").startswith(b"text/event-stream")
            if self.streaming:
                self.held = b""
                return
            await self._send(message)
            return
        if message["type"] != "http.response.body":
            await self._send(message)
            return
        if self.dropped:
            return
        more = message.get("more_body", False)
        if self.error_chunks is not None:
            self.error_chunks.append(message.get("body", b""))
            if not more:
                await self._answer_error(b"".join(self.error_chunks))
            return
        if self.held is not None:
            self.held += message.get("body", b"")
            if more and b"\n\n" not in self.held:
                return  # the first event is not complete yet
            first = self.held.split(b"\n\n", 1)[0]
            if first.startswith(b'data: {"error"'):
                self.held = None
                self.dropped = True
                await self._answer_error(first[len(b"data: ") :])
                return
            assert self.start is not None
            message = {**message, "body": self.held}
            self.held = None
            await self._send(self.start)
        if self.streaming and message.get("body"):
            text = message["body"].decode("utf-8", "replace")
            rewritten = rewrite_error_events(text, self.request_id, engine_dead=self.engine_dead(), fields=self.fields)
            if rewritten is not text:
                message = {**message, "body": rewritten.encode()}
        self.finished = not more
        await self._send(message)

    async def _answer_error(self, raw: bytes) -> None:
        """Answer the engine's error body `raw` (vLLM's `ErrorResponse`, from a non-2xx answer or a stream's first
        event) as the JSON error a client may see."""
        assert self.start is not None
        status, message, param = engine_error_of(self.start["status"] if self.error_chunks is not None else 400, raw)
        answer = engine_answer(
            status, message, self.request_id, engine_dead=self.engine_dead(), param=param, fields=self.fields
        )
        response = api_error_json(self.request_id, answer)
        self.finished = True
        await response({"type": "http"}, _no_receive, self._send)

    async def failed(self, error: Exception, scope: Scope, receive: Receive) -> None:
        """An exception escaped vLLM's app (its error middleware re-raises after answering)."""
        if self.finished or self.dropped:
            logger.warning("request %s: the engine raised after answering", self.request_id, exc_info=error)
            return
        answer = classify(error, self.request_id, engine_dead=self.engine_dead())
        if self.start is None or self.held is not None:
            # Nothing of the answer was sent yet (a stream's start is still held): a JSON error, as unstreamed.
            self.held = None
            self.finished = True
            await api_error_json(self.request_id, answer)(scope, receive, self._send)
        elif self.streaming:
            event = f"{error_event(answer)}\n\ndata: [DONE]\n\n"
            await self._send({"type": "http.response.body", "body": event.encode(), "more_body": False})
        elif self.error_chunks is not None:
            await self._answer_error(b"".join(self.error_chunks))
        else:
            logger.error("request %s: %s", self.request_id, internal_error_message(self.request_id), exc_info=error)
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


async def read_body(receive: Receive) -> bytes:
    """The whole request body (every `http.request` message until `more_body` is false)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "the client went away before the request body was read")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
