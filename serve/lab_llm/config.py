"""Typed settings of one lab-llm deployment: the engine, how it is served, and who may use it.

One YAML document (or the `args` of a Ray Serve application) validates into `AppConfig`. Every
other part of lab-llm (the CLI, the Ansible roles, the RayService renderer) writes or reads this shape.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Scope = Literal["models", "chat", "completions", "metrics", "admin"]
ALL_SCOPES: tuple[Scope, ...] = ("models", "chat", "completions", "metrics", "admin")

Quantization = Literal["awq", "awq_marlin", "gptq", "gptq_marlin", "fp8", "bitsandbytes", "compressed-tensors"]

# vLLM 0.32's registered tool-call parsers (`vllm.tool_parsers.ToolParserManager.list_registered()`) and reasoning
# parsers (`vllm.reasoning.ReasoningParserManager.list_registered()`); a unit test fails when the installed vLLM
# registers a different set, so this list moves with the pinned engine.
TOOL_CALL_PARSERS = frozenset(
    [
        "apertus",
        "cohere_command3",
        "cohere_command4",
        "deepseek_v3",
        "deepseek_v31",
        "deepseek_v32",
        "deepseek_v4",
        "deepseek_v41",
        "dots",
        "ernie45",
        "functiongemma",
        "gemma4",
        "gigachat3",
        "glm45",
        "glm47",
        "granite",
        "granite-20b-fc",
        "granite4",
        "hermes",
        "hf",
        "hunyuan_a13b",
        "hy_v3",
        "hy_v4",
        "inkling",
        "internlm",
        "jamba",
        "k2_horizon",
        "kimi_k2",
        "kimi_k3",
        "lfm2",
        "ling3",
        "llama3_json",
        "llama4_json",
        "llama4_pythonic",
        "longcat",
        "mimo",
        "minicpm5",
        "minimax_m2",
        "minimax_m3",
        "mistral",
        "muse_glimmer",
        "olmo3",
        "openai",
        "phi4_mini_json",
        "plamo3",
        "poolside_v1",
        "pythonic",
        "qwen3_coder",
        "qwen3_json",
        "qwen3_xml",
        "seed_oss",
        "step3",
        "step3p5",
        "xlam",
    ]
)
REASONING_PARSERS = frozenset(
    [
        "cohere_command3",
        "cohere_command4",
        "deepseek_r1",
        "deepseek_v3",
        "deepseek_v4",
        "deepseek_v41",
        "ernie45",
        "gemma4",
        "glm45",
        "glm47",
        "granite",
        "granite_thinking_parser",
        "hf",
        "holo2",
        "hunyuan_a13b",
        "hy_v3",
        "hy_v4",
        "inkling",
        "k2_horizon",
        "kimi_k2",
        "kimi_k3",
        "ling3",
        "mimo",
        "minicpmv",
        "minimax_m2",
        "minimax_m2_append_think",
        "minimax_m3",
        "mistral",
        "muse_glimmer",
        "nemotron_v3",
        "olmo3",
        "openai_gptoss",
        "plamo3",
        "poolside_v1",
        "qwen3",
        "seed_oss",
        "step3",
        "step3p5",
    ]
)

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# vLLM reads these itself; lab-llm sets them from typed fields, so they may not be overridden through `env`.
_RESERVED_ENV = {"CUDA_VISIBLE_DEVICES"}


class ConfigError(ValueError):
    """A configuration that cannot be used, with every problem named by its field path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineConfig(_Strict):
    """vLLM engine settings (names as vLLM's own engine arguments)."""

    model: str = Field(min_length=1, description="Local path of the model directory, or a model id.")
    served_model_name: str | None = Field(
        default=None, description="Name clients use in `model`; defaults to the last part of `model`."
    )
    tensor_parallel_size: Annotated[int, Field(ge=1, le=64)] = 1
    pipeline_parallel_size: Annotated[int, Field(ge=1, le=64)] = 1
    gpu_memory_utilization: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    cpu_offload_gb: Annotated[float, Field(ge=0.0)] = 0.0
    max_model_len: Annotated[int, Field(ge=16)] | None = None
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] = "auto"
    quantization: Quantization | None = None
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] = "auto"
    enforce_eager: bool = False
    max_num_seqs: Annotated[int, Field(ge=1)] | None = None
    enable_auto_tool_choice: bool | None = Field(
        default=None,
        description="Let the model decide when to call a tool (`tool_choice: auto`, also what a request with "
        "`tools` and no `tool_choice` means); needs `tool_call_parser`. Unset: vLLM's default, off.",
    )
    tool_call_parser: str | None = Field(
        default=None, description="vLLM's parser for the model's tool-call format, e.g. `hermes`, `mistral`."
    )
    reasoning_parser: str | None = Field(
        default=None,
        description="vLLM's parser that returns a reasoning model's thinking as `reasoning_content`, "
        "e.g. `deepseek_r1`.",
    )
    chat_template: str | None = Field(
        default=None,
        min_length=1,
        description="Chat template to use instead of the tokenizer's: a file path (on the engine's nodes) or "
        "the Jinja template itself.",
    )
    env: dict[str, str] = Field(default_factory=dict, description="Environment of the engine workers.")

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not _ENV_NAME.match(name):
                raise ValueError(f"env: {name!r} is not a valid environment variable name")
            if name in _RESERVED_ENV:
                raise ValueError(f"env: {name} is set by the placement of the workers, not by configuration")
        return env

    @field_validator("tool_call_parser")
    @classmethod
    def _known_tool_call_parser(cls, parser: str | None) -> str | None:
        if parser is not None and parser not in TOOL_CALL_PARSERS:
            raise ValueError(
                f"{parser!r} is not a tool-call parser of vLLM; known: {', '.join(sorted(TOOL_CALL_PARSERS))}"
            )
        return parser

    @field_validator("reasoning_parser")
    @classmethod
    def _known_reasoning_parser(cls, parser: str | None) -> str | None:
        if parser is not None and parser not in REASONING_PARSERS:
            raise ValueError(
                f"{parser!r} is not a reasoning parser of vLLM; known: {', '.join(sorted(REASONING_PARSERS))}"
            )
        return parser

    @model_validator(mode="after")
    def _auto_tool_choice_has_a_parser(self) -> EngineConfig:
        # vLLM refuses to start otherwise ("--enable-auto-tool-choice requires --tool-call-parser").
        if self.enable_auto_tool_choice and self.tool_call_parser is None:
            raise ValueError("enable_auto_tool_choice needs tool_call_parser (how to read the model's tool calls)")
        return self

    @model_validator(mode="after")
    def _layer_partition_matches_pipeline(self) -> EngineConfig:
        partition = self.env.get("VLLM_PP_LAYER_PARTITION")
        if partition is None:
            return self
        parts = partition.split(",")
        if not all(part.strip().isdigit() and int(part) > 0 for part in parts):
            raise ValueError(
                f"env.VLLM_PP_LAYER_PARTITION={partition!r}: expected comma-separated positive layer counts"
            )
        if len(parts) != self.pipeline_parallel_size:
            raise ValueError(
                f"env.VLLM_PP_LAYER_PARTITION={partition!r} has {len(parts)} stages but "
                f"pipeline_parallel_size is {self.pipeline_parallel_size}"
            )
        return self

    @property
    def model_id(self) -> str:
        """The name clients ask for."""
        return self.served_model_name or self.model.rstrip("/").split("/")[-1]

    @property
    def world_size(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size


class IngressConfig(_Strict):
    """Where Ray Serve runs the gated ingress (Ray Serve deployment options of the same names).

    Ray Serve starts its HTTP proxy only on nodes that hold a replica (and the head), and KubeRay's readiness probe
    of a RayService worker checks that proxy, so a worker with no replica is never Ready (Ray docs, "RayService worker
    Pods aren't ready"). One ingress replica per worker node (`num_replicas` = workers, `max_replicas_per_node` 1)
    gives every worker a proxy, as that guide does; `num_cpus` above 0 keeps the replicas off a head that advertises
    no CPUs.
    """

    num_replicas: Annotated[int, Field(ge=1)] = 1
    max_replicas_per_node: Annotated[int, Field(ge=1)] | None = None
    num_cpus: Annotated[float, Field(ge=0)] = 0.0


class ServingConfig(_Strict):
    """How Ray Serve runs the engine and the ingress in front of it."""

    accelerator: Literal["gpu", "cpu"] = Field(
        default="gpu",
        description="`cpu` runs vLLM's CPU build (tests, the demo); `gpu` places one GPU per rank.",
    )
    cpus_per_worker: Annotated[float, Field(gt=0)] = 1.0
    num_replicas: Annotated[int, Field(ge=1)] = 1
    max_ongoing_requests: Annotated[int, Field(ge=1)] = Field(
        default=64, description="Requests one engine replica works on at once; more wait in the queue."
    )
    max_queued_requests: Annotated[int, Field(ge=1)] = Field(
        default=256, description="Requests allowed to wait; beyond that the endpoint answers 503 at once."
    )
    ingress: IngressConfig = Field(default_factory=IngressConfig)


class RolePolicy(_Strict):
    """What a role may do: endpoint scopes and model names (shell-style patterns)."""

    scopes: tuple[Scope, ...]
    models: tuple[str, ...] = ("*",)


def _default_roles() -> dict[str, RolePolicy]:
    return {
        "admin": RolePolicy(scopes=ALL_SCOPES),
        "user": RolePolicy(scopes=("models", "chat", "completions")),
        "viewer": RolePolicy(scopes=("models",)),
    }


class AuthConfig(_Strict):
    """OAuth2/JWT settings. The files hold secrets and may be mounted from Kubernetes Secrets."""

    store_path: Path = Field(description="Users and API keys (YAML), reloaded when it changes.")
    signing_keys_path: Path = Field(description="JWT signing keys with their `kid` (YAML), reloaded on change.")
    issuer: str = "lab-llm"
    audience: str = "lab-llm"
    access_token_ttl_s: Annotated[int, Field(ge=60, le=7 * 24 * 3600)] = 3600
    roles: dict[str, RolePolicy] = Field(default_factory=_default_roles)
    login_attempts_per_user: Annotated[int, Field(ge=1)] = 5
    login_attempts_per_client: Annotated[int, Field(ge=1)] = 20
    login_window_s: Annotated[float, Field(gt=0)] = 300.0
    metrics_public: bool = Field(
        default=True, description="Serve /metrics without a token (Prometheus scrapes); else scope `metrics`."
    )

    @model_validator(mode="after")
    def _admin_role_exists(self) -> AuthConfig:
        if not any("admin" in policy.scopes for policy in self.roles.values()):
            raise ValueError("roles: no role has the `admin` scope, so nobody could manage API keys")
        return self


class AppConfig(_Strict):
    """One lab-llm deployment."""

    engine: EngineConfig
    serving: ServingConfig = Field(default_factory=ServingConfig)
    auth: AuthConfig


def parse_config(data: Any, *, source: str = "configuration") -> AppConfig:
    """Validate a mapping into an AppConfig, or raise ConfigError naming each bad field."""
    try:
        return AppConfig.model_validate(data)
    except ValidationError as error:
        problems = [
            f"  {'.'.join(str(part) for part in problem['loc']) or '(top level)'}: {problem['msg']}"
            for problem in error.errors()
        ]
        raise ConfigError(f"{source} is not valid:\n" + "\n".join(problems)) from None


def load_config(path: Path) -> AppConfig:
    """Read and validate a YAML configuration file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read configuration {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    return parse_config(data, source=str(path))
