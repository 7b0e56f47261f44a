"""Errors in the OpenAI format, `{"error": {"message", "type", "param", "code"}}`, and nothing else.

`code` is one of OpenAI's string codes (`invalid_api_key`, `model_not_found`, `context_length_exceeded`,
`rate_limit_exceeded`, ...) where one fits and `null` otherwise, as OpenAI's published contract says
(`components.schemas.Error` of openai/openai-openapi). Every error a client sees is written here: the message is
one lab-llm or the engine chose to show, never an exception's text, a traceback, a process id, a path or an
address. What went wrong inside is logged with the request id, which the error carries (header `x-request-id`,
and in the message of every 5xx).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("lab_llm.app")

REQUEST_ID_HEADER = "x-request-id"

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable_error",
}


class ErrorInfo(BaseModel):
    """OpenAI's `Error` object."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's `ErrorResponse`: the body of every non-2xx answer."""

    error: ErrorInfo


class ApiError(Exception):
    """An error answered to the client as it is: the message must be safe to show."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


def model_not_found(model: str) -> ApiError:
    # OpenAI's own wording and code for a model that is not there, or not there for this caller.
    return ApiError(
        404,
        f"The model {model!r} does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


def error_body(status_code: int, message: str, *, param: str | None = None, code: str | None = None) -> dict:
    info = ErrorInfo(message=message, type=_TYPE_BY_STATUS.get(status_code, "api_error"), param=param, code=code)
    return ErrorResponse(error=info).model_dump()


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or request.headers.get(REQUEST_ID_HEADER) or "")


def error_response(
    request: Request,
    status_code: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error answer with the request's id in the `x-request-id` header and, for a 5xx, in the message."""
    return error_json(request_id_of(request), status_code, message, param=param, code=code, headers=headers)


def error_json(
    request_id: str,
    status_code: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """`error_response` for a request known by its id (the gate's pure-ASGI path has no `Request`)."""
    if status_code >= 500 and request_id not in message:
        message = f"{message} (request id {request_id})"
    return JSONResponse(
        status_code=status_code,
        content=error_body(status_code, message, param=param, code=code),
        headers={**(headers or {}), REQUEST_ID_HEADER: request_id},
    )


def api_error_json(request_id: str, error: ApiError) -> JSONResponse:
    return error_json(
        request_id, error.status_code, error.message, param=error.param, code=error.code, headers=error.headers
    )


async def handle_api_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return api_error_json(request_id_of(request), error)


# FastAPI and Starlette raise HTTPException with texts of their own; these are the ones a client may see.
_HTTP_EXCEPTION_MESSAGES = {
    400: "the request body could not be read",
    404: "no such route",
    405: "method not allowed on this route",
    413: "the request body is too large",
}


async def handle_http_exception(request: Request, error: Exception) -> JSONResponse:
    """Starlette/FastAPI HTTPExceptions (unknown route, wrong method, unreadable body) in the OpenAI format."""
    assert isinstance(error, HTTPException)
    status = error.status_code if 400 <= error.status_code < 600 else 500
    if status == 404:
        return error_response(request, 404, no_such_route(request.url.path).message)
    message = _HTTP_EXCEPTION_MESSAGES.get(status, "the request could not be served")
    return error_response(request, status, message, headers=dict(error.headers or {}))


def has_trailing_slash(path: str) -> bool:
    return len(path) > 1 and path.endswith("/")


def no_such_route(path: str) -> ApiError:
    """The 404 for a path the server does not publish; a path with a trailing slash is told the path without it
    (no redirect: Starlette's 307 has an empty body, and many clients follow it without the POST body)."""
    message = _HTTP_EXCEPTION_MESSAGES[404]
    if has_trailing_slash(path):
        message = f"{message}: {path[:128]!r}; paths take no trailing slash ({path.rstrip('/')[:128]!r})"
    return ApiError(404, message)


async def handle_validation_error(request: Request, error: Exception) -> JSONResponse:
    """A request body that is not JSON or not a valid request: 400, naming the bad field (`validation_problem`)."""
    assert isinstance(error, RequestValidationError)
    problems = [{**problem, "loc": tuple(problem.get("loc", ()))[1:]} for problem in error.errors()]
    message, param = validation_problem(problems, error.body)
    return error_response(request, 400, message, param=param)


def validation_problem(problems: Sequence[Mapping[str, Any]], body: Any) -> tuple[str, str | None]:
    """The one problem worth telling the client, as `("invalid request: <what> at <param>", param)`.

    `problems` are pydantic's `errors()` (with `loc` relative to the body). For a union pydantic reports every
    member's failure, with the member's name in `loc` (`ChatCompletionDeveloperMessageParam`, `str`,
    `function-wrap[...]`), so the first problem often names a member the client never meant. The problem told is one
    of a member the body does not rule out (no wrong literal such as `role`), preferring a broken rule (too many
    items, a value out of range) over a wrong type; `param` is the path in the body's own keys and indexes.
    """
    if not problems:
        return "invalid request", None
    walked = [(problem, *_walk(problem, body)) for problem in problems]
    ruled_out = {members[-1] for problem, _, members in walked if problem.get("type") == "literal_error" and members}
    candidates = [entry for entry in walked if not ruled_out.intersection(entry[2])] or walked
    problem, path, _ = min(candidates, key=lambda entry: _is_type_problem(entry[0]))
    param = ".".join(path) or None
    message = f"invalid request: {problem.get('msg', 'invalid value')}" + (f" at {param}" if param else "")
    return message, param


def _is_type_problem(problem: Mapping[str, Any]) -> bool:
    kind = str(problem.get("type", ""))
    return kind.endswith(("_type", "_parsing")) or kind == "missing"


def _walk(problem: Mapping[str, Any], body: Any) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """(`loc` in the body's own keys and indexes, the union members on the way, each as its `loc` prefix)."""
    location = tuple(problem.get("loc", ()))
    path: list[str] = []
    members: list[tuple[str, ...]] = []
    node = body
    for position, part in enumerate(location):
        in_body = (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        )
        if in_body:
            node = node[part]
        elif not (problem.get("type") == "missing" and position == len(location) - 1):
            members.append(tuple(str(step) for step in location[: position + 1]))
            continue
        path.append(str(part))
    return tuple(path), tuple(members)


def internal_error_message(request_id: str) -> str:
    return f"internal error; the server log has the details under request id {request_id}"


class RequestIdMiddleware:
    """Gives every request an id (the `x-request-id` HAProxy, Serve or the client set, else a new one), puts it on the
    response, and turns any exception that escapes the app into a 500 in the OpenAI format with that id, logging
    the exception with it. Pure ASGI, so it wraps streaming responses without buffering them.

    `answer_header=False` where an outer layer answers the header itself: Serve's direct-ingress server wraps every
    replica app in its own request-id middleware, which appends `x-request-id` (the same id, read from the same
    request header) to every response (`ray/serve/_private/http_util.py`, `RequestIdMiddleware`); a second copy would
    reach clients as `id, id`."""

    def __init__(self, app: ASGIApp, *, answer_header: bool = True) -> None:
        self.app = app
        self.answer_header = answer_header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")[:128] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = False
        header = REQUEST_ID_HEADER.encode()

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                response_headers = [(k, v) for k, v in message.get("headers") or [] if k.lower() != header]
                if self.answer_header:
                    response_headers.append((header, request_id.encode("latin-1")))
                message = {**message, "headers": response_headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("request %s failed", request_id)
            if started:
                return  # a stream already under way ends here; its client sees the connection close
            response = JSONResponse(
                status_code=500,
                content=error_body(500, internal_error_message(request_id)),
                headers={REQUEST_ID_HEADER: request_id},
            )
            await response(scope, receive, send_with_id)


_STATUS_DESCRIPTIONS = {
    400: "Malformed request.",
    401: "Missing, malformed or unknown credential (code `invalid_api_key`).",
    403: "The caller's role may not use this endpoint or model.",
    404: "Not found (for a model: code `model_not_found`).",
    409: "Conflicts with what is stored.",
    429: "Too many requests; see `Retry-After`.",
    500: "Internal error; the message carries the request id.",
    503: "Overloaded, or the engine is not available; see `Retry-After`.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route for the OpenAPI document: each status with OpenAI's ErrorResponse body."""
    return {status: {"model": ErrorResponse, "description": _STATUS_DESCRIPTIONS[status]} for status in statuses}
