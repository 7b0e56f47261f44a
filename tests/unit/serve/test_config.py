"""AppConfig validation: good configurations parse, bad ones name every bad field."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab_llm.config import ConfigError, load_config, parse_config

AUTH = {"store_path": "/etc/lab-llm/store.yaml", "signing_keys_path": "/etc/lab-llm/keys.yaml"}


def test_minimal_config_gets_documented_defaults() -> None:
    config = parse_config({"engine": {"model": "/models/Mistral-Small-24B-AWQ/"}, "auth": AUTH})
    assert config.engine.model_id == "Mistral-Small-24B-AWQ"
    assert config.engine.world_size == 1
    assert config.serving.accelerator == "gpu"
    assert set(config.auth.roles) == {"admin", "user", "viewer"}
    assert "chat" not in config.auth.roles["viewer"].scopes


def test_pipeline_layer_partition_must_match_the_stages() -> None:
    engine = {"model": "m", "pipeline_parallel_size": 2, "env": {"VLLM_PP_LAYER_PARTITION": "20,20"}}
    assert parse_config({"engine": engine, "auth": AUTH}).engine.world_size == 2
    engine["env"] = {"VLLM_PP_LAYER_PARTITION": "40"}
    with pytest.raises(ConfigError, match="has 1 stages but pipeline_parallel_size is 2"):
        parse_config({"engine": engine, "auth": AUTH})


def test_every_bad_field_is_named_with_its_path() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "engine": {"model": "m", "tensor_parallel_size": 0, "kv_cache_dtype": "int3", "typo": 1},
                "serving": {"accelerator": "tpu"},
                "auth": {},
            }
        )
    message = str(caught.value)
    for path in ("engine.tensor_parallel_size", "engine.kv_cache_dtype", "engine.typo", "serving.accelerator"):
        assert path in message
    assert "auth.store_path" in message


def test_a_role_set_without_admin_is_refused() -> None:
    auth = {**AUTH, "roles": {"user": {"scopes": ["chat"]}}}
    with pytest.raises(ConfigError, match="no role has the `admin` scope"):
        parse_config({"engine": {"model": "m"}, "auth": auth})


def test_reserved_and_malformed_env_names_are_refused() -> None:
    for env, problem in (({"CUDA_VISIBLE_DEVICES": "0"}, "differs per node"), ({"1BAD": "x"}, "not a valid")):
        with pytest.raises(ConfigError, match=problem):
            parse_config({"engine": {"model": "m", "env": env}, "auth": AUTH})


def test_load_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_text("engine: [unclosed")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("engine", "problem"),
    [
        ({"enable_auto_tool_choice": True}, "enable_auto_tool_choice needs tool_call_parser"),
        ({"tool_call_parser": "hermes2"}, "engine.tool_call_parser: .*'hermes2' is not a tool-call parser of vLLM"),
        ({"reasoning_parser": "r1"}, "engine.reasoning_parser: .*'r1' is not a reasoning parser of vLLM"),
        ({"chat_template": ""}, "engine.chat_template"),
    ],
)
def test_tool_calling_options_are_checked_as_vllm_would(engine: dict, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_config({"engine": {"model": "m", **engine}, "auth": AUTH})


def test_tool_calling_options_parse() -> None:
    engine = {"model": "m", "enable_auto_tool_choice": True, "tool_call_parser": "mistral"}
    config = parse_config({"engine": {**engine, "reasoning_parser": "deepseek_r1"}, "auth": AUTH})
    assert (config.engine.tool_call_parser, config.engine.reasoning_parser) == ("mistral", "deepseek_r1")


def test_parser_names_are_those_the_pinned_vllm_registers() -> None:
    """The names are kept in config (which must import without vLLM); they move with the pinned engine."""
    vllm_tool_parsers = pytest.importorskip("vllm.tool_parsers")
    vllm_reasoning = pytest.importorskip("vllm.reasoning")
    from lab_llm.config import REASONING_PARSERS, TOOL_CALL_PARSERS

    assert set(vllm_tool_parsers.ToolParserManager.list_registered()) == TOOL_CALL_PARSERS
    assert set(vllm_reasoning.ReasoningParserManager.list_registered()) == REASONING_PARSERS
