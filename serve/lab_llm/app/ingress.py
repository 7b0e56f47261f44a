"""The OpenAI ingress of `ray.serve.llm`, with every model route behind the gate and every error in OpenAI's format.

`ray.serve.llm.build_openai_app` wires its own FastAPI app and cannot take route dependencies, so we bind the same
pieces ourselves (`build_llm_deployment`, `OpenAiIngress`, `make_fastapi_ingress`) with our app. Only these
routes are exposed: models, chat completions, completions, readiness. The request bodies are read and validated
by the gate's dependencies with the engine's own request classes; Ray's request handling is reused as it is, and
whatever it or the engine raises is answered here (`engine_errors`).
"""

# No `from __future__ import annotations`: FastAPI must evaluate the Annotated[..., Security(closure)] hints.

import asyncio
import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request, Security
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, ValidationError

from lab_llm.app.engine_contract import (
    ChatCompletionRequest,
    CompletionRequest,
    OpenAiIngress,
    VLLMClientError,
    model_path_id,
)
from lab_llm.app.engine_errors import ENGINE_DOWN_RETRY_AFTER_S, answer_for_engine_error, rewrite_stream_errors
from lab_llm.app.errors import ApiError, error_response, error_responses, request_id_of
from lab_llm.app.security import Gate, check_model_allowed, json_body, requested_model, require
from lab_llm.auth import Principal

logger = logging.getLogger("lab_llm.app")

# How long readiness waits for the engine's own health check before it calls the engine not ready.
READINESS_TIMEOUT_S = 5.0


class ModelObject(BaseModel):
    """OpenAI's Model object (`components.schemas.Model`)."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="Unix time (seconds) at which this deployment of the model was built.")
    owned_by: str


class ModelListResponse(BaseModel):
    """OpenAI's `ListModelsResponse`."""

    object: Literal["list"] = "list"
    data: list[ModelObject]


class GatedIngress(OpenAiIngress):
    """OpenAiIngress whose routes take bodies the gate validated, list only what the caller's role may use, and
    answer every failure in OpenAI's error format."""

    def __init__(self, *args: Any, created: int = 0, owned_by: str = "lab-llm", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._created = created
        self._owned_by = owned_by

    def _model_object(self, model_id: str) -> ModelObject:
        return ModelObject(id=model_id, created=self._created, owned_by=self._owned_by)

    async def visible_models(self, request: Request) -> ModelListResponse:
        principal: Principal = request.state.principal
        listed = await self.models()
        return ModelListResponse(
            data=[self._model_object(card.id) for card in listed.data if principal.may_use_model(card.id)]
        )

    async def model_object(self, request: Request) -> ModelObject:
        return self._model_object(request.state.model_to_serve)

    async def chat_completions(self, request: Request) -> Response:
        return await self._serve(request, "chat")

    async def text_completions(self, request: Request) -> Response:
        return await self._serve(request, "completions")

    async def _serve(self, request: Request, call_method: str) -> Response:
        body = request.state.engine_request
        try:
            response = await self._process_llm_request(body, call_method=call_method, raw_request=request)
        except Exception as error:
            return answer_for_engine_error(request, error)
        if isinstance(response, StreamingResponse):
            response.body_iterator = rewrite_stream_errors(response.body_iterator, request_id_of(request))
        return response

    async def ready(self, request: Request) -> Response:
        """200 when every model's engine answers its health check within a few seconds; 503 otherwise."""
        try:
            async with asyncio.timeout(READINESS_TIMEOUT_S):
                for handle in self._default_serve_handles.values():
                    await handle.check_health.remote()
        except Exception as error:
            logger.warning("readiness: engine not ready (request %s): %r", request_id_of(request), error)
            return error_response(
                request,
                503,
                "the engine is not ready to serve",
                headers={"Retry-After": str(ENGINE_DOWN_RETRY_AFTER_S)},
            )
        return JSONResponse({"status": "ready"})


def _json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` describing a JSON body whose schema lives in components under the model's name."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }


ENGINE_REQUEST_MODELS: dict[str, type[BaseModel]] = {
    "chat": ChatCompletionRequest,
    "completions": CompletionRequest,
}


def _validated(model: type[BaseModel], body: dict[str, Any]) -> BaseModel:
    """The body as the engine's request class, or a 400 naming the first bad field; never an exception."""
    try:
        return model.model_validate(body)
    except ValidationError as error:
        problems = error.errors(include_url=False, include_input=False)
        first = problems[0] if problems else {"loc": (), "msg": "invalid value"}
        param = ".".join(str(part) for part in first.get("loc", ())) or None
        message = f"invalid request: {first.get('msg', 'invalid value')}" + (f" at {param}" if param else "")
        raise ApiError(400, message, param=param) from None
    except VLLMClientError as error:
        # vLLM's own validators say what is wrong, and which parameter, in words meant for the client.
        raise ApiError(400, f"invalid request: {error}", param=getattr(error, "parameter", None)) from None
    except Exception:
        # A validator of the engine's class that raised something else on this body (TypeError, KeyError, ...).
        logger.info("request body refused by the engine's request class", exc_info=True)
        raise ApiError(400, f"invalid request: the body is not a valid {model.__name__}") from None


def gated_endpoints(gate: Gate) -> dict[str, Callable[[FastAPI], Any]]:
    """Route decorators for `make_fastapi_ingress`, each with the dependency that authorizes it."""
    caller = require(gate)

    def engine_request(call_method: str, scope: str):
        request_model = ENGINE_REQUEST_MODELS[call_method]

        async def dependency(
            request: Request,
            principal: Annotated[Principal, Security(caller, scopes=[scope])],
            model: Annotated[str | None, Depends(requested_model)],
        ) -> None:
            served = gate.model_to_serve(model)
            check_model_allowed(principal, served)
            body = await json_body(request)
            request.state.engine_request = _validated(request_model, body)

        return dependency

    async def may_list_models(request: Request, principal: Annotated[Principal, Security(caller, scopes=["models"])]):
        request.state.principal = principal

    async def may_see_model(
        request: Request, model: str, principal: Annotated[Principal, Security(caller, scopes=["models"])]
    ):
        # Ray looks up `--` in the path as `/`; check the id it will look up.
        served = gate.model_to_serve(model_path_id(model))
        check_model_allowed(principal, served)
        request.state.model_to_serve = served

    statuses = (400, 401, 403, 404, 429, 500, 503)
    return {
        "visible_models": lambda app: app.get(
            "/v1/models",
            response_model=ModelListResponse,
            dependencies=[Depends(may_list_models)],
            responses=error_responses(401, 403, 500),
            summary="List the models the caller may use",
        ),
        "model_object": lambda app: app.get(
            "/v1/models/{model:path}",
            response_model=ModelObject,
            dependencies=[Depends(may_see_model)],
            responses=error_responses(401, 403, 404, 500),
            summary="Retrieve a model",
        ),
        "text_completions": lambda app: app.post(
            "/v1/completions",
            dependencies=[Depends(engine_request("completions", "completions"))],
            responses=error_responses(*statuses),
            openapi_extra=_json_request_body(CompletionRequest),
            summary="Create a completion (streamed as server-sent events when `stream` is true)",
        ),
        "chat_completions": lambda app: app.post(
            "/v1/chat/completions",
            dependencies=[Depends(engine_request("chat", "chat"))],
            responses=error_responses(*statuses),
            openapi_extra=_json_request_body(ChatCompletionRequest),
            summary="Create a chat completion (streamed as server-sent events when `stream` is true)",
        ),
        "ready": lambda app: app.get(
            "/readyz",
            responses=error_responses(503),
            summary="Readiness: 200 when the engine can serve, 503 otherwise (no credential needed)",
        ),
    }
