"""Every name lab-llm takes from Ray's and vLLM's internals, in one place.

Ray 2.60 (`ray.llm._internal.serve`) and vLLM 0.32 are what the tests ran. An upgrade that moves or renames one
of these breaks this module first, and `tests/unit/serve/app/test_engine_contract.py` names what moved. The rest
of `lab_llm` imports from here, never from `ray.llm._internal` or `vllm` directly.
"""

from __future__ import annotations

from typing import Any

# Runs in the engine replica before the engine starts (LLMConfig.callback_config; vllm_engine.py start()).
from ray.llm._internal.common.callbacks.base import CallbackBase
from ray.llm._internal.serve.core.configs.openai_api_models import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatCompletionStreamResponse,
    CompletionRequest,
    CompletionResponse,
    CompletionStreamResponse,
)
from ray.llm._internal.serve.utils.server_utils import replace_prefix
from ray.serve.llm import LLMConfig, LLMServer, build_llm_deployment
from vllm.entrypoints.generate.base.protocol import FunctionCall
from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionNamedToolChoiceParam
from vllm.exceptions import VLLMClientError, VLLMNotFoundError
from vllm.v1.engine.exceptions import EngineDeadError


def model_path_id(path_id: str) -> str:
    """The model id a client means in `GET /v1/models/{id}`: `--` in the path stands for `/` (Ray's convention)."""
    return replace_prefix(path_id)


def structured_outputs_of(request: ChatCompletionRequest | CompletionRequest) -> None:
    """Derive the structured-output constraint the engine will apply (`response_format` over `structured_outputs`),
    as vLLM does when it builds the sampling parameters. Raises `VLLMClientError` for a body whose constraint the
    engine would refuse (none or several: `StructuredOutputsParams.__post_init__`)."""
    request.extract_structured_outputs()


def chat_serving(engine_app: Any) -> Any:
    """vLLM's chat handler (`OpenAIServingChat`) in its built app (`app.state.openai_serving_chat`, set by
    vllm/entrypoints/generate/api_router.py; Ray's `VLLMEngine.build_asgi_app` builds that app), or None. Its
    `parser_cls` (a `vllm.parser.abstract_parser.Parser` subclass, None without a tool or reasoning parser) makes one
    parser per choice (`_make_parser`); `parser_cls.tool_parser_cls` is the tool parser."""
    return getattr(getattr(engine_app, "state", None), "openai_serving_chat", None)


def served_max_model_len(engine_app: Any) -> int | None:
    """The context length the engine serves (vLLM's `ModelConfig.max_model_len`, which its own `/v1/models` reports per
    model) from its built app (`app.state.openai_serving_models.model_config`, set by
    vllm/entrypoints/launchers/api_server/app_state.py), or None where the app has none."""
    models = getattr(getattr(engine_app, "state", None), "openai_serving_models", None)
    value = getattr(getattr(models, "model_config", None), "max_model_len", None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def engine_errored(server: LLMServer) -> bool:
    """Whether the vLLM engine inside an `LLMServer` has died (vLLM's `EngineClient.errored`; the replica then fails
    its health check and Serve replaces it). False while the engine is starting."""
    client = getattr(getattr(server, "engine", None), "_engine_client", None)
    return bool(getattr(client, "errored", False))


__all__ = [
    "CallbackBase",
    "ChatCompletionNamedToolChoiceParam",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "ChatCompletionStreamResponse",
    "CompletionRequest",
    "CompletionResponse",
    "CompletionStreamResponse",
    "EngineDeadError",
    "FunctionCall",
    "LLMConfig",
    "LLMServer",
    "VLLMClientError",
    "VLLMNotFoundError",
    "build_llm_deployment",
    "chat_serving",
    "engine_errored",
    "model_path_id",
    "served_max_model_len",
    "structured_outputs_of",
]
