"""What the planner needs to know about a model: its shape (from config.json) and how it is stored."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lab_llm.plan.checkpoint import read_checkpoint
from lab_llm.plan.errors import PlanInputError

WeightDtype = Literal["fp16", "bf16", "fp8", "awq", "gptq"]
WEIGHT_DTYPES: tuple[str, ...] = get_args(WeightDtype)
KV_CACHE_DTYPES: tuple[str, ...] = ("auto", "fp16", "bf16", "fp8")

# Aliases people type for the same storage format.
_WEIGHT_ALIASES = {
    "float16": "fp16",
    "half": "fp16",
    "bfloat16": "bf16",
    "float8": "fp8",
    "fp8_e4m3": "fp8",
    "awq_marlin": "awq",
    "auto_awq": "awq",
    "awq-4bit": "awq",
    "int4-awq": "awq",
    "gptq_marlin": "gptq",
    "auto_gptq": "gptq",
    "gptq-4bit": "gptq",
}
_KV_ALIASES = {"float16": "fp16", "bfloat16": "bf16", "fp8_e4m3": "fp8", "fp8_e5m2": "fp8"}

# transformers writes into config.json only the fields that differ from its config class's defaults
# (PretrainedConfig.to_diff_dict), and vLLM reads config.json through that class, so a field left out has the
# class's default. For most model types the planner's own defaults (ModelSpec) are the class's; these differ, in
# the fields the planner reads (transformers 5.19 configuration_*.py; checked against the installed transformers by
# tests/unit/serve/plan/test_checkpoint.py). Gemma 3's text_config, for one, has no vocab_size.
_TIED = {"tie_word_embeddings": True}
CONFIG_CLASS_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma": {**_TIED, "vocab_size": 256000, "max_position_embeddings": 8192, "num_attention_heads": 16,
              "num_key_value_heads": 16, "head_dim": 256},
    "gemma2": {**_TIED, "vocab_size": 256000, "max_position_embeddings": 8192, "num_attention_heads": 8,
               "num_key_value_heads": 4, "head_dim": 256},
    "gemma3_text": {**_TIED, "vocab_size": 262208, "max_position_embeddings": 131072, "num_attention_heads": 8,
                    "num_key_value_heads": 4, "head_dim": 256},
    "cohere": {**_TIED, "vocab_size": 256000, "max_position_embeddings": 8192},
    "cohere2": {**_TIED, "vocab_size": 256000, "max_position_embeddings": 8192, "head_dim": 128},
    "starcoder2": {**_TIED, "vocab_size": 49152, "max_position_embeddings": 4096},
    "falcon": {**_TIED, "vocab_size": 65024, "max_position_embeddings": 2048},
    "ernie4_5": {**_TIED, "vocab_size": 103424, "max_position_embeddings": 131072},
    "smollm3": {**_TIED, "vocab_size": 128256, "max_position_embeddings": 32768},
}  # fmt: skip

# Where a config.json names the number of routed experts (Mixtral, Qwen-MoE, OLMoE ...).
_EXPERT_KEYS = ("num_local_experts", "num_experts")


class ModelSpec(BaseModel):
    """The shape of a decoder-only transformer, with the field names of a Hugging Face config.json."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(default="model", description="What vLLM loads: a hub id or a local path.")
    architectures: tuple[str, ...] = ()
    num_hidden_layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_key_value_heads: int = Field(default=0, ge=0, description="0 means no GQA: as many as attention heads.")
    head_dim: int = Field(default=0, ge=0, description="0 means hidden_size / num_attention_heads.")
    intermediate_size: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    num_local_experts: int = Field(default=0, ge=0, description="Routed experts of a MoE; 0 for a dense model.")
    num_experts_per_tok: int = Field(default=0, ge=0)
    moe_intermediate_size: int = Field(default=0, ge=0, description="Expert width when it differs from the MLP.")
    max_position_embeddings: int = Field(default=0, ge=0)
    caveats: tuple[str, ...] = Field(default=(), description="What the planner does not model for this model.")
    checkpoint_weights: WeightFormat | None = Field(
        default=None, description="The checkpoint's own quantization_config (AWQ, GPTQ, fp8), when it has one."
    )
    unmodelled_quantization: str = Field(
        default="", description="The checkpoint's quant_method when the planner does not model it (bitsandbytes...)."
    )
    checkpoint_bytes: int = Field(
        default=0, ge=0, description="metadata.total_size of the checkpoint's safetensors index; 0 when unknown."
    )
    source: str = Field(default="", description="Where config.json was read: a path, or hub:ORG/NAME@commit.")

    @model_validator(mode="after")
    def _check_shape(self) -> ModelSpec:
        if self.num_attention_heads % self.kv_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) is not a multiple of "
                f"num_key_value_heads ({self.kv_heads})"
            )
        if not self.head_dim and self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) is not divisible by num_attention_heads "
                f"({self.num_attention_heads}) and no head_dim is given"
            )
        if self.num_local_experts and not self.num_experts_per_tok:
            raise ValueError("a MoE model (num_local_experts > 0) needs num_experts_per_tok")
        return self

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def is_moe(self) -> bool:
        return self.num_local_experts > 0

    @property
    def expert_intermediate_size(self) -> int:
        return self.moe_intermediate_size or self.intermediate_size


class WeightFormat(BaseModel):
    """How the checkpoint stores its linear layers (embeddings and norms stay 16-bit in all of them)."""

    model_config = ConfigDict(frozen=True)

    dtype: WeightDtype = "bf16"
    bits: int = Field(default=4, description="Only for awq/gptq; vLLM's Marlin kernels take 4 (and 8 for GPTQ).")
    group_size: int = Field(default=128, description="Only for awq/gptq; -1 means one group per column.")

    @property
    def is_int_quantized(self) -> bool:
        return self.dtype in ("awq", "gptq")


ModelSpec.model_rebuild()


def normalise_weight_dtype(value: str) -> WeightDtype:
    dtype = _WEIGHT_ALIASES.get(value.strip().lower(), value.strip().lower())
    if dtype not in WEIGHT_DTYPES:
        raise PlanInputError(f"unknown weight dtype {value!r}; expected one of {', '.join(WEIGHT_DTYPES)}")
    return cast(WeightDtype, dtype)  # one of WeightDtype's values, checked above


def normalise_kv_cache_dtype(value: str) -> str:
    dtype = _KV_ALIASES.get(value.strip().lower(), value.strip().lower())
    if dtype not in KV_CACHE_DTYPES:
        raise PlanInputError(f"unknown KV cache dtype {value!r}; expected one of {', '.join(KV_CACHE_DTYPES)}")
    return dtype


def _flatten_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Multimodal wrappers (Mistral3, Qwen2-VL ...) keep the language model's shape in text_config."""
    fields = dict(config)
    text_config = config.get("text_config")
    if isinstance(text_config, Mapping):
        fields.update(text_config)
    model_type = str(fields.get("model_type", ""))
    for key, default in CONFIG_CLASS_DEFAULTS.get(model_type, {}).items():
        if fields.get(key) is None:
            fields[key] = default
    for key in _EXPERT_KEYS:
        if fields.get(key):
            fields["num_local_experts"] = fields[key]
            break
    if fields.get("kv_lora_rank") or fields.get("q_lora_rank"):
        raise PlanInputError(
            "multi-head latent attention (DeepSeek-V2/V3 style, kv_lora_rank in config.json) is not "
            "modelled by the planner yet"
        )
    if "attention_bias" not in fields and str(fields.get("model_type", "")).startswith("qwen2"):
        # Qwen2 / Qwen2.5 have q/k/v biases without saying so in config.json (transformers' Qwen2Attention).
        fields["attention_bias"] = True
    caveats = list(fields.get("caveats") or ())
    if isinstance(config.get("vision_config"), Mapping):
        caveats.append("the vision encoder's weights are not counted: leave room for them (or plan text-only)")
    window = fields.get("sliding_window")
    if window and fields.get("use_sliding_window", True) and window < (fields.get("max_position_embeddings") or 0):
        caveats.append(
            f"sliding-window attention ({window} tokens) is sized as full attention: the KV cache estimate is "
            "on the safe side"
        )
    fields["caveats"] = tuple(caveats)
    return fields


def load_model_spec(
    source: ModelSpec | Mapping[str, Any] | str | Path, name: str | None = None, revision: str | None = None
) -> ModelSpec:
    """A ModelSpec from a spec, a config.json mapping, a path to config.json or its directory, or a Hugging Face
    Hub model id (``ORG/NAME``, at ``revision``; see ``lab_llm.plan.checkpoint``)."""
    if isinstance(source, ModelSpec):
        return source.model_copy(update={"name": name}) if name else source
    if isinstance(source, str | Path):
        checkpoint = read_checkpoint(source, revision)
        spec = load_model_spec(checkpoint.config, name=name or checkpoint.name)
        return spec.model_copy(
            update={
                "checkpoint_bytes": checkpoint.safetensors_total_bytes or 0,
                "source": checkpoint.source,
                "caveats": spec.caveats + checkpoint.caveats,
            }
        )
    fields = _flatten_config(source)
    if "checkpoint_weights" not in fields:
        fields["checkpoint_weights"], fields["unmodelled_quantization"] = checkpoint_quantization(source)
    if name:
        fields["name"] = name
    required = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size", "vocab_size")
    missing = [key for key in required if fields.get(key) in (None, "")]
    if missing:
        raise PlanInputError(f"model config is missing required field(s): {', '.join(missing)}")
    try:
        # config.json writes null for "not set" (Mistral's "head_dim": null, sliding_window: null ...).
        return ModelSpec.model_validate({key: value for key, value in fields.items() if value is not None})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'model'}: {item['msg']}" for item in error.errors()
        )
        raise PlanInputError(f"model config is invalid: {problems}") from error


def _compressed_tensors_format(quant: Mapping[str, Any]) -> WeightFormat | None:
    """llm-compressor's ``compressed-tensors`` config: one weight scheme for the Linear layers (config_groups)."""
    groups = quant.get("config_groups")
    weights = (
        [g.get("weights") for g in groups.values() if isinstance(g, Mapping)] if isinstance(groups, Mapping) else []
    )
    schemes = [scheme for scheme in weights if isinstance(scheme, Mapping)]
    if len(schemes) != 1:
        return None
    scheme = schemes[0]
    bits, kind = int(scheme.get("num_bits") or 0), str(scheme.get("type", "")).lower()
    if kind == "float" and bits == 8:
        return WeightFormat(dtype="fp8")
    if kind == "int" and bits == 4:
        # Packed int32 weights with a 16-bit scale per group (pack-quantized), as GPTQ stores them; symmetric
        # schemes have no zero points, so the GPTQ arithmetic overstates them by half a byte per group and column.
        group = scheme.get("group_size")
        return WeightFormat(dtype="gptq", bits=4, group_size=int(group) if group else -1)
    return None


def checkpoint_quantization(config: Mapping[str, Any]) -> tuple[WeightFormat | None, str]:
    """The checkpoint's own weight format, and the quant_method when it is one the planner does not model."""
    quant = config.get("quantization_config")
    if not isinstance(quant, Mapping):
        return None, ""
    method = str(quant.get("quant_method", "")).lower()
    found: WeightFormat | None
    if method in ("awq", "gptq"):
        found = WeightFormat(
            dtype="awq" if method == "awq" else "gptq",
            bits=int(quant.get("bits", quant.get("w_bit", 4))),
            group_size=int(quant.get("group_size", quant.get("q_group_size", 128))),
        )
        return found, ""
    if method == "fp8":
        return WeightFormat(dtype="fp8"), ""
    if method == "compressed-tensors":
        found = _compressed_tensors_format(quant)
        return (found, "") if found else (None, "compressed-tensors with a scheme other than 4-bit int or 8-bit float")
    return None, method or "a quantization_config without quant_method"


def weight_format_from_config(config: Mapping[str, Any]) -> WeightFormat | None:
    """The checkpoint's own quantization_config (AWQ/GPTQ/fp8/compressed-tensors), when the planner models it."""
    return checkpoint_quantization(config)[0]
