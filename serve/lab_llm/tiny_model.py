"""A deterministic tiny Llama with random weights, for the demo and the tests (no model hub is reachable).

The model is real to every consumer (transformers, vLLM, Ray Serve): a Llama architecture saved with
`save_pretrained` in safetensors, a byte-level BPE tokenizer trained on generated text, and a chat template.
It is generated once per machine into a cache directory; a recipe hash tells when to build it again.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

RECIPE: dict[str, Any] = {
    "architecture": "LlamaForCausalLM",
    "vocab_size": 2000,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    # Long enough for what OpenWebUI sends (its title task asks max_tokens 1000 after a prompt of several hundred).
    "max_position_embeddings": 8192,
    # The default output length of a request without max_tokens (generation_config.json, which vLLM reads with its
    # default --generation-config auto; a request's own max_tokens still wins). Random weights rarely emit EOS (about
    # once in 1800 tokens), so without it every such request would run to the end of the context.
    "max_new_tokens": 256,
    "seed": 1234,
    "corpus_sentences": 4000,
    "recipe_version": 3,
}
RECIPE_FILE = "lab_llm_recipe.json"
SPECIAL_TOKENS = ["<|pad|>", "<|begin_of_text|>", "<|end_of_text|>", "<|user|>", "<|assistant|>", "<|system|>"]
# Content may be a string, a list of parts (OpenAI's format) or null (an assistant turn that only calls tools);
# an assistant's tool calls are written out as JSON so a conversation with tool results renders too.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|' + message['role'] + '|>' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% elif message['content'] %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{% if message['tool_calls'] %}{{ message['tool_calls'] | tojson }}{% endif %}"
    "{{ eos_token }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
_WORDS = [
    "the",
    "a",
    "GPU",
    "card",
    "model",
    "layer",
    "token",
    "cache",
    "node",
    "cluster",
    "ray",
    "serve",
    "vllm",
    "proxmox",
    "host",
    "memory",
    "tensor",
    "pipeline",
    "parallel",
    "split",
    "fits",
    "runs",
    "fast",
    "slow",
    "quiet",
    "lab",
    "rack",
    "switch",
    "fiber",
    "link",
    "batch",
    "stream",
    "request",
    "answer",
    "question",
    "key",
    "user",
    "admin",
    "role",
    "secret",
    "bright",
    "small",
    "large",
    "red",
    "green",
    "blue",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
]


def recipe_digest() -> str:
    return hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()


def is_current(model_dir: Path) -> bool:
    """Whether `model_dir` holds a model built from the current recipe."""
    recipe_path = model_dir / RECIPE_FILE
    try:
        return json.loads(recipe_path.read_text())["digest"] == recipe_digest()
    except (OSError, ValueError, KeyError):
        return False


def _corpus(rng: random.Random) -> list[str]:
    # Made-up words from syllables give the BPE trainer enough merges to reach the vocabulary size.
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"]
    invented = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(3000)]
    sentences = []
    for _ in range(RECIPE["corpus_sentences"]):
        words = [rng.choice(_WORDS if rng.random() < 0.5 else invented) for _ in range(rng.randint(4, 14))]
        sentences.append(" ".join(words).capitalize() + rng.choice([".", "?", "!"]))
    return sentences


def _build_tokenizer(rng: random.Random):  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=RECIPE["vocab_size"],
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(rng), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        pad_token="<|pad|>",
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|system|>"],
        model_max_length=RECIPE["max_position_embeddings"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build(model_dir: Path, *, force: bool = False) -> bool:
    """Build the tiny model into `model_dir` unless it is already current. Returns whether it was built."""
    if not force and is_current(model_dir):
        return False
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    rng = random.Random(RECIPE["seed"])
    torch.manual_seed(RECIPE["seed"])
    tokenizer = _build_tokenizer(rng)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=RECIPE["hidden_size"],
        intermediate_size=RECIPE["intermediate_size"],
        num_hidden_layers=RECIPE["num_hidden_layers"],
        num_attention_heads=RECIPE["num_attention_heads"],
        num_key_value_heads=RECIPE["num_key_value_heads"],
        max_position_embeddings=RECIPE["max_position_embeddings"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        dtype="float32",
    )
    model = LlamaForCausalLM(config)
    model.generation_config.do_sample = False
    model.generation_config.max_new_tokens = RECIPE["max_new_tokens"]

    model_dir.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and swap in whole, so a reader never sees half a model.
    staging = Path(tempfile.mkdtemp(prefix=".tiny-model-", dir=model_dir.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / RECIPE_FILE).write_text(json.dumps({"digest": recipe_digest(), "recipe": RECIPE}, indent=2))
        staging.chmod(0o755)
        for path in staging.iterdir():
            path.chmod(0o644)
        if model_dir.exists():
            shutil.rmtree(model_dir)
        staging.rename(model_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True
