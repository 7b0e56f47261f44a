"""Every name lab-llm takes from Ray's and vLLM's internals, in one place.

Ray 2.60 (`ray.llm._internal.serve`) and vLLM 0.32 are what the tests ran. An upgrade that moves or renames one
of these breaks this module first, and `tests/unit/serve/app/test_engine_contract.py` names what moved. The rest
of `lab_llm` imports from here, never from `ray.llm._internal` or `vllm` directly.
"""

from __future__ import annotations

from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RaySystemError, RayTaskError

# Runs in the engine replica before the engine starts (LLMConfig.callback_config; vllm_engine.py start()).
from ray.llm._internal.common.callbacks.base import CallbackBase
from ray.llm._internal.common.utils.lora_utils import get_base_model_id
from ray.llm._internal.serve.core.configs.openai_api_models import (
    ChatCompletionRequest,
    CompletionRequest,
    ModelCard,
    OpenAIHTTPException,
    to_model_metadata,
)
from ray.llm._internal.serve.observability.metrics.fast_api_metrics import (
    add_http_metrics_middleware,
    metrics_lifespan,
)
from ray.llm._internal.serve.utils.server_utils import replace_prefix
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.llm import LLMConfig, build_llm_deployment
from ray.serve.llm.ingress import OpenAiIngress, make_fastapi_ingress
from vllm.exceptions import GracefulHTTPError, VLLMClientError, VLLMNotFoundError
from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

# Exceptions that say the engine (or the replica holding it) cannot serve right now, as opposed to a request it
# could not process: answered 503 with Retry-After. Ray raises a remote exception as a `RayTaskError` that is also
# an instance of the original class, so an `isinstance` check sees through the wrapping.
ENGINE_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    EngineDeadError,
    RayActorError,
    ActorDiedError,
    ActorUnavailableError,
    RaySystemError,
    DeploymentUnavailableError,
)

# Methods of `OpenAiIngress` that lab-llm calls or overrides; the contract test checks each still exists.
INGRESS_METHODS = ("chat", "completions", "models", "model", "model_data", "_process_llm_request")


def served_model_id(requested: str) -> str:
    """The model id Ray's ingress looks up for a requested id: the part before `:` (a LoRA adapter suffix)."""
    return get_base_model_id(requested)


def model_path_id(path_id: str) -> str:
    """The model id Ray's `GET /v1/models/{id}` looks up: `--` in the path stands for `/`."""
    return replace_prefix(path_id)


__all__ = [
    "ENGINE_UNAVAILABLE_ERRORS",
    "INGRESS_METHODS",
    "BackPressureError",
    "CallbackBase",
    "ChatCompletionRequest",
    "CompletionRequest",
    "DeploymentUnavailableError",
    "EngineDeadError",
    "EngineGenerateError",
    "GracefulHTTPError",
    "LLMConfig",
    "ModelCard",
    "OpenAIHTTPException",
    "OpenAiIngress",
    "RayTaskError",
    "VLLMClientError",
    "VLLMNotFoundError",
    "add_http_metrics_middleware",
    "build_llm_deployment",
    "make_fastapi_ingress",
    "metrics_lifespan",
    "model_path_id",
    "served_model_id",
    "to_model_metadata",
]
