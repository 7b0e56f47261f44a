"""The published OpenAPI document (`/openapi.json`) as the API really is.

The chat and completion routes read their bodies through the gate, so FastAPI cannot see them: their schemas are
the engine's own request and response classes (vLLM's, through Ray), added here; the 200 answer is JSON or, with
`stream`, `text/event-stream` whose `data:` lines each carry one chunk, as in OpenAI's own document. FastAPI's 422
is replaced by the 400 the API answers, with OpenAI's error body; every route lists the error statuses it may answer.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from lab_llm.app.engine_contract import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatCompletionStreamResponse,
    CompletionRequest,
    CompletionResponse,
    CompletionStreamResponse,
)
from lab_llm.app.errors import ErrorResponse

_REF = "#/components/schemas/{model}"


# Request bodies as the engine reads them; answers as it writes them.
_ENGINE_SCHEMAS: tuple[tuple[Any, Literal["validation", "serialization"]], ...] = (
    (ChatCompletionRequest, "validation"),
    (CompletionRequest, "validation"),
    (ChatCompletionResponse, "serialization"),
    (ChatCompletionStreamResponse, "serialization"),
    (CompletionResponse, "serialization"),
    (CompletionStreamResponse, "serialization"),
)


def _engine_components() -> dict[str, Any]:
    """The engine classes' schemas with every class they use, in one pass so that two classes of one name (vLLM's
    request and response `FunctionCall`) get distinct entries, each at its class's name."""
    keymap, document = models_json_schema([*_ENGINE_SCHEMAS, (ErrorResponse, "validation")], ref_template=_REF)
    for (model, _mode), ref in keymap.items():
        if ref["$ref"] != _REF.format(model=model.__name__):
            raise RuntimeError(f"{model.__name__} is described at {ref['$ref']}, not at its own name")
    return dict(document.get("$defs", {}))


def describe_api(app: FastAPI) -> None:
    """Make `app.openapi()` (what `/openapi.json` serves) describe the real bodies and error answers."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes, description=__doc__)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(_engine_components())
        error_body = {"application/json": {"schema": {"$ref": _REF.format(model="ErrorResponse")}}}
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                responses = operation.setdefault("responses", {})
                if responses.pop("422", None) is not None:
                    responses.setdefault("400", {"description": "Malformed request.", "content": error_body})
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
