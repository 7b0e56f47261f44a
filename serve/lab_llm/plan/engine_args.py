"""What a plan means to paste: the ``vllm serve`` command line and the playbook variables.

``engine_config`` has the fields of ``lab_llm.config.EngineConfig``; the serving app hands every field but
``model``, ``served_model_name`` and ``env`` to vLLM as an engine argument of the same name when it is not None
(``lab_llm.app.builder.to_llm_config``). ``vllm serve`` takes the same arguments as ``--kebab-case`` flags, and
booleans as ``--flag`` / ``--no-flag`` (vLLM's ``EngineArgs.add_cli_args`` gives bool fields
``argparse.BooleanOptionalAction``, vllm/engine/arg_utils.py).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

import yaml

from lab_llm.plan.result import FitPlan

# Placed by the app itself, not engine arguments (lab_llm.app.builder._NOT_ENGINE_ARGUMENTS).
NOT_ENGINE_ARGUMENTS = frozenset({"model", "served_model_name", "env"})


def engine_arguments(engine_config: Mapping[str, Any]) -> dict[str, Any]:
    """The vLLM engine arguments the serving app passes for this engine config."""
    return {
        name: value for name, value in engine_config.items() if name not in NOT_ENGINE_ARGUMENTS and value is not None
    }


def vllm_serve_argv(plan: FitPlan, revision: str | None = None) -> list[str]:
    """``vllm serve MODEL --flag value ...`` with the same engine arguments as the plan's engine config; PP over
    several nodes needs Ray as vLLM's executor (the app runs on Ray anyway)."""
    engine = plan.engine_config
    argv = ["vllm", "serve", str(engine["model"])]
    if engine.get("served_model_name"):
        argv += ["--served-model-name", str(engine["served_model_name"])]
    if revision:
        argv += ["--revision", revision]
    for name, value in engine_arguments(engine).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        else:
            argv += [flag, str(value)]
    if len({gpu.node for stage in plan.stages for gpu in stage.gpus}) > 1:
        argv += ["--distributed-executor-backend", "ray"]
    return argv


def vllm_serve_command(plan: FitPlan, revision: str | None = None) -> str:
    """One shell line: the engine's environment, then ``vllm serve``."""
    env = [f"{name}={shlex.quote(str(value))}" for name, value in plan.engine_config.get("env", {}).items()]
    return " ".join([*env, shlex.join(vllm_serve_argv(plan, revision))])


def playbook_vars(plan: FitPlan) -> dict[str, Any]:
    """``llm_app_engine`` (plain Ray, role lab.llm.llm_app) and ``rayservice_engine`` + ``rayservice_worker_groups``
    (Kubernetes, role lab.llm.rayservice): the same engine config for both."""
    engine = dict(plan.engine_config)
    return {
        "llm_app_engine": engine,
        "rayservice_engine": engine,
        "rayservice_worker_groups": [
            {**group, "node_group": f"gpu-{group['gpu_class']}"} for group in plan.worker_groups
        ],
    }


def playbook_vars_yaml(plan: FitPlan) -> str:
    """The variables as YAML for an inventory's group_vars (no anchors: each block stands alone)."""

    class _NoAliases(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    return yaml.dump(playbook_vars(plan), Dumper=_NoAliases, sort_keys=False, default_flow_style=False)
