"""The published OpenAPI document (`/openapi.json`) as the API really is.

The chat and completion routes read their bodies through the gate, so FastAPI cannot see them: their schemas are
the engine's own request classes (vLLM's, through Ray), added here. FastAPI's 422 is replaced by the 400 the API
answers, with OpenAI's error body; every route lists the error statuses it may answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from lab_llm.app.engine_contract import ChatCompletionRequest, CompletionRequest
from lab_llm.app.errors import ErrorResponse

_REF = "#/components/schemas/{model}"


def _add_schema(components: dict[str, Any], model: Any) -> None:
    schema = model.model_json_schema(ref_template=_REF, mode="validation")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema


def describe_api(app: FastAPI) -> None:
    """Make `app.openapi()` (what `/openapi.json` serves) describe the real bodies and error answers."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes, description=__doc__)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (ChatCompletionRequest, CompletionRequest, ErrorResponse):
            _add_schema(components, model)
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
