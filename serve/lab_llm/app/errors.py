"""Errors in the OpenAI format (`{"error": {"message", "type", "param", "code"}}`), using vLLM's protocol classes."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from vllm.entrypoints.serve.engine.protocol import ErrorInfo, ErrorResponse

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}


class ApiError(Exception):
    """An error answered to the client as it is: the message must be safe to show."""

    def __init__(self, status_code: int, message: str, *, param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.param = param
        self.headers = headers or {}


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})


def error_body(status_code: int, message: str, param: str | None = None) -> dict:
    info = ErrorInfo(message=message, type=_TYPE_BY_STATUS.get(status_code, "api_error"), param=param, code=status_code)
    return ErrorResponse(error=info).model_dump()


async def handle_api_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return JSONResponse(
        status_code=error.status_code,
        content=error_body(error.status_code, error.message, error.param),
        headers=error.headers,
    )


async def handle_http_exception(_request: Request, error: Exception) -> JSONResponse:
    """Starlette/FastAPI HTTPExceptions (e.g. ray.serve.llm's unknown model) in the OpenAI format."""
    assert isinstance(error, HTTPException)
    return JSONResponse(
        status_code=error.status_code,
        content=error_body(error.status_code, str(error.detail)),
        headers=error.headers,
    )


async def handle_validation_error(_request: Request, error: Exception) -> JSONResponse:
    """A request body that is not JSON or not a valid request: 400, naming the first bad field."""
    assert isinstance(error, RequestValidationError)
    problems = error.errors()
    first = problems[0] if problems else {"msg": "invalid request", "loc": ()}
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    message = f"invalid request: {first.get('msg', 'invalid value')}" + (f" at {param}" if param else "")
    return JSONResponse(status_code=400, content=error_body(400, message, param))
