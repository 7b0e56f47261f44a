"""The OpenAI ingress of `ray.serve.llm`, with every model route behind the gate.

`ray.serve.llm.build_openai_app` wires its own FastAPI app and cannot take route dependencies, so we bind
the same pieces ourselves (`build_llm_deployment`, `OpenAiIngress`, `make_fastapi_ingress`) with our app.
Only the routes below are exposed: models, chat completions, completions.
"""

# No `from __future__ import annotations`: FastAPI must evaluate the Annotated[..., Security(closure)] hints.

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security
from ray.llm._internal.serve.core.configs.openai_api_models import ModelCard, ModelList
from ray.serve.llm.ingress import OpenAiIngress

from lab_llm.app.security import Gate, check_model_allowed, requested_model, require
from lab_llm.auth import Principal


class GatedIngress(OpenAiIngress):
    """OpenAiIngress whose model list shows only the models the caller's role may use."""

    async def visible_models(self, request: Request) -> ModelList:
        principal: Principal = request.state.principal
        listed = await self.models()
        return ModelList(data=[card for card in listed.data if principal.may_use_model(card.id)])


def gated_endpoints(gate: Gate) -> dict[str, Callable[[FastAPI], Any]]:
    """Route decorators for `make_fastapi_ingress`, each with the dependency that authorizes it."""
    caller = require(gate)

    def allowed_body_model(scope: str):
        async def dependency(
            request: Request,
            principal: Annotated[Principal, Security(caller, scopes=[scope])],
            model: Annotated[str | None, Depends(requested_model)],
        ) -> None:
            check_model_allowed(principal, model)

        return dependency

    async def may_list_models(request: Request, principal: Annotated[Principal, Security(caller, scopes=["models"])]):
        request.state.principal = principal

    async def may_see_model(model: str, principal: Annotated[Principal, Security(caller, scopes=["models"])]):
        check_model_allowed(principal, model)

    return {
        "visible_models": lambda app: app.get(
            "/v1/models", response_model=ModelList, dependencies=[Depends(may_list_models)]
        ),
        "model_data": lambda app: app.get(
            "/v1/models/{model:path}", response_model=ModelCard, dependencies=[Depends(may_see_model)]
        ),
        "completions": lambda app: app.post(
            "/v1/completions", dependencies=[Depends(allowed_body_model("completions"))]
        ),
        "chat": lambda app: app.post("/v1/chat/completions", dependencies=[Depends(allowed_body_model("chat"))]),
    }
