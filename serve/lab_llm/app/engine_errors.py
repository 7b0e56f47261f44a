"""What a client is told when Ray or the engine fails a request: OpenAI's error body, the right status, no internals.

Kinds, in the order they are told apart (a remote exception arrives as a `RayTaskError` that is also an instance
of its cause's class, so `isinstance` sees through Ray's wrapping):

- the engine's own error answer (vLLM's `ErrorResponse`, raised by Ray as `OpenAIHTTPException`): its status
  and its message, once; 422 and 501 become 400, 408 (Ray's router timed out) a 503; a 5xx a generic 500;
- Serve's queue is full (`BackPressureError`) or vLLM's admission control refuses (`GracefulHTTPError`):
  503 with `Retry-After`;
- the engine or its replica is down or restarting (`EngineDeadError`, actor died or unavailable, ...):
  503 with `Retry-After`;
- vLLM says the request is at fault (`VLLMClientError`): 400 (404 for not found) with vLLM's message;
- anything else the engine raised while handling the request (TypeError, KeyError, ...): 400, generic message;
- anything else raised in this process: 500, generic message with the request id.

Every exception is logged with the request id; a message that still looks like it carries internals (a
traceback, a path, a process or actor id, an address) is replaced by the generic one.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from lab_llm.app.engine_contract import (
    ENGINE_UNAVAILABLE_ERRORS,
    BackPressureError,
    GracefulHTTPError,
    OpenAIHTTPException,
    RayTaskError,
    VLLMClientError,
    VLLMNotFoundError,
)
from lab_llm.app.errors import ApiError, error_body, error_response, internal_error_message, request_id_of

logger = logging.getLogger("lab_llm.app")

OVERLOAD_RETRY_AFTER_S = 2
ENGINE_DOWN_RETRY_AFTER_S = 10

# Signs that a message carries internals rather than something written for the client.
_INTERNALS = re.compile(
    r"Traceback \(most recent call last\)|File \"/|\bpid=|\bip=|\bnode_id\b|\bactor_id\b|ActorID|"
    r"ray::|\(Request ID: |Internal exception:|original exception:|site-packages|/usr/|/home/|/tmp/|/root/"
)
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


def _safe(message: str, fallback: str) -> str:
    message = message.strip()
    return fallback if not message or _INTERNALS.search(message) else message


def _cause(error: BaseException) -> BaseException:
    cause = getattr(error, "cause", None) if isinstance(error, RayTaskError) else None
    return cause if isinstance(cause, BaseException) else error


def _engine_answer(status: int, message: str, request_id: str) -> ApiError:
    """The engine's own error answer (vLLM's status and message), as a client may see it."""
    generic = f"the engine could not process this request (request id {request_id})"
    if status == 408:
        # Ray's router gave up waiting for the engine (a replica restarting or swamped): retryable, like 503.
        logger.warning("request %s: the engine did not answer in time: %s", request_id, message)
        return ApiError(
            503, "the engine did not answer in time; retry later", headers={"Retry-After": str(OVERLOAD_RETRY_AFTER_S)}
        )
    if status == 503:
        logger.warning("request %s: the engine answered 503: %s", request_id, message)
        return ApiError(
            503,
            _safe(message, "the engine is busy; retry later"),
            headers={"Retry-After": str(OVERLOAD_RETRY_AFTER_S)},
        )
    if status >= 500 and status != 501:
        logger.error("request %s: the engine answered %s: %s", request_id, status, message)
        return ApiError(500, internal_error_message(request_id))
    # 422 (vLLM's unprocessable entity) and 501 (a feature this engine lacks) are the request's fault: 400.
    status = status if 400 <= status < 500 and status != 422 else 400
    message = _safe(message, generic)
    return ApiError(status, message, code=client_code(status, message))


def classify(error: BaseException, request_id: str) -> ApiError:
    """The answer for an exception raised while Ray or the engine handled a request."""
    cause = _cause(error)
    if isinstance(cause, ApiError):
        return cause
    if isinstance(cause, OpenAIHTTPException):
        return _engine_answer(int(cause.status_code), cause.message, request_id)
    if isinstance(cause, BackPressureError | GracefulHTTPError):
        logger.warning("request %s refused: %s", request_id, cause)
        status = int(getattr(cause, "http_status", 503))
        return ApiError(
            status if status in (429, 503) else 503,
            "the server is at capacity; retry later",
            code="rate_limit_exceeded" if status == 429 else None,
            headers={"Retry-After": str(OVERLOAD_RETRY_AFTER_S)},
        )
    if isinstance(error, ENGINE_UNAVAILABLE_ERRORS) or isinstance(cause, ENGINE_UNAVAILABLE_ERRORS):
        logger.error("request %s: the engine is not available", request_id, exc_info=error)
        return ApiError(
            503,
            f"the engine is not available right now (restarting); retry later (request id {request_id})",
            headers={"Retry-After": str(ENGINE_DOWN_RETRY_AFTER_S)},
        )
    generic = f"the engine could not process this request (request id {request_id})"
    if isinstance(cause, VLLMClientError):
        logger.info("request %s refused by the engine: %s", request_id, cause)
        status = 404 if isinstance(cause, VLLMNotFoundError) else 400
        message = _safe(str(cause), generic)
        return ApiError(status, message, code=client_code(status, message))
    if isinstance(error, RayTaskError) or isinstance(cause, ValueError | TypeError | KeyError | IndexError):
        # Raised by the engine (or Ray's handling of this body) on this request's input.
        logger.warning("request %s: the engine failed on the request", request_id, exc_info=error)
        return ApiError(400, generic)
    logger.error("request %s failed", request_id, exc_info=error)
    return ApiError(500, internal_error_message(request_id))


def answer_for_engine_error(request: Request, error: BaseException) -> JSONResponse:
    answer = classify(error, request_id_of(request))
    return error_response(
        request, answer.status_code, answer.message, param=answer.param, code=answer.code, headers=answer.headers
    )


def _rewrite_event(line: str, request_id: str) -> str:
    """An SSE `data:` line carrying an error object, rewritten to OpenAI's error body."""
    try:
        payload: Any = json.loads(line[len("data: ") :])
        error = payload["error"]
        status = int(error.get("code") or 500) if str(error.get("code") or "").isdigit() else 400
        message = str(error.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return line
    answer = _engine_answer(status, message, request_id)
    return "data: " + json.dumps(error_body(answer.status_code, answer.message, code=answer.code))


async def rewrite_stream_errors(chunks: AsyncIterable[Any], request_id: str) -> AsyncIterator[str | bytes]:
    """Relay a stream of SSE chunks; error events are rewritten to OpenAI's body, and an exception mid-stream ends
    the stream with an error event and `[DONE]` instead of a broken connection."""
    try:
        async for chunk in chunks:
            text = chunk.decode() if isinstance(chunk, bytes) else str(chunk)
            if 'data: {"error"' in text:
                text = "\n".join(
                    _rewrite_event(line, request_id) if line.startswith('data: {"error"') else line
                    for line in text.split("\n")
                )
            yield text
    except Exception as error:
        answer = classify(error, request_id)
        body = error_body(answer.status_code, answer.message, code=answer.code)
        yield f"data: {json.dumps(body)}\n\ndata: [DONE]\n\n"
