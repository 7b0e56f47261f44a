# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The field names of lab-llm's AppConfig sections, so a typo fails before it reaches a live RayService.

lab-llm's config models (serve/lab_llm/config.py: EngineConfig, ServingConfig, AuthConfig) forbid unknown fields,
but they run only when the Serve application starts in the cluster, after the RayService was written. The engine
fields are vLLM's engine argument names. The collection carries the names (the managed host and the controller need
not have lab_llm installed); a unit test fails when they drift from config.py.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

ENGINE_FIELDS = (
    "model", "served_model_name", "tensor_parallel_size", "pipeline_parallel_size", "gpu_memory_utilization",
    "cpu_offload_gb", "max_model_len", "dtype", "quantization", "kv_cache_dtype", "enforce_eager", "max_num_seqs",
    "enable_auto_tool_choice", "tool_call_parser", "tool_strict_level", "reasoning_parser", "chat_template", "env",
)  # fmt: skip
SERVING_FIELDS = (
    "accelerator", "cpus_per_worker", "num_replicas", "max_ongoing_requests", "proxy_replicas", "max_queued_requests",
    "placement_bundles",
)  # fmt: skip
AUTH_FIELDS = (
    "store_path", "signing_keys_path", "issuer", "audience", "access_token_ttl_s", "roles", "login_attempts_per_user",
    "login_attempts_per_client", "login_window_s", "metrics_public", "admin_key_changes",
)  # fmt: skip
SECTION_FIELDS = {"engine": ENGINE_FIELDS, "serving": SERVING_FIELDS, "auth": AUTH_FIELDS}


def unknown_fields(where: str, section: str, given: Mapping[str, Any] | None) -> list[str]:
    """One message per key of ``given`` that lab-llm's ``section`` (engine, serving, auth) does not have.

    ``where`` names the option in the messages (``engine``, ``fit_plan.engine_config``); a close known name is
    suggested.
    """
    known = SECTION_FIELDS[section]
    problems = []
    for key in given or {}:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = "did you mean %r? " % close[0] if close else ""
            problems.append(
                "%s.%s is not a field of lab-llm's %s config (%sknown: %s)"
                % (where, key, section, hint, ", ".join(known))
            )
    return problems
