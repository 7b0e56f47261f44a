"""Where the ranks of one engine run: Ray placement bundles, and on CPU which cores each rank's threads use.

- **Bundles.** One Ray bundle per rank (TP x PP), in rank order. Given by the fit plan (`ray_placement_bundles`,
  each with the GPU-class resource its stage was sized for) or, by default, ``{"CPU": cpus_per_worker}`` plus
  ``{"GPU": 1}`` on GPU. ``ray.serve.llm`` merges the engine replica's own resources into bundle 0, so the
  replica runs beside rank 0 (``llm_server.py``, ``_merge_replica_actor_and_child_actor_bundles``).
- **Strategy.** GPU: ``PACK`` (ranks spread over nodes when one is not enough; vLLM's Ray executor then runs one
  worker per bundle). CPU: ``STRICT_PACK``: vLLM's CPU platform has no Ray executor (``ray.serve.llm`` picks the
  ``mp`` backend, ``engines/vllm/vllm_models.py``), so every rank is a local process of the replica's node and
  the bundles only reserve that node's CPUs.
- **CPU threads.** vLLM's ``auto`` binding gives each local rank a NUMA node of its own
  (``vllm/utils/ompmultiprocessing.py``) and refuses more ranks than NUMA nodes ("Not enough allowed NUMA nodes
  to bind threads of 2 local CPUWorkers"). `CpuThreadBinding` runs in the engine replica, on the node that hosts
  the ranks, right before the engine starts (Ray Serve LLM's callback hook ``on_before_node_init``), and sets
  ``VLLM_CPU_OMP_THREADS_BIND`` from that process's allowed cores (`omp_threads_bind`), which the rank processes
  inherit.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from lab_llm.app.engine_contract import CallbackBase
from lab_llm.config import AppConfig

logger = logging.getLogger(__name__)

THREADS_BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"


def placement_group_config(config: AppConfig) -> dict[str, Any]:
    """``LLMConfig.placement_group_config``: ``{"bundles": [one per rank], "strategy": "PACK" | "STRICT_PACK"}``."""
    engine, serving = config.engine, config.serving
    if serving.placement_bundles is not None:
        bundles = [dict(bundle) for bundle in serving.placement_bundles]
    else:
        default: dict[str, float] = {"CPU": serving.cpus_per_worker}
        if serving.accelerator == "gpu":
            default["GPU"] = 1
        bundles = [dict(default) for _ in range(engine.world_size)]
    return {"bundles": bundles, "strategy": "STRICT_PACK" if serving.accelerator == "cpu" else "PACK"}


def omp_threads_bind(cores: Sequence[int], ranks: int) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND`` for ``ranks`` local CPU workers on ``cores`` (the allowed logical CPU ids).

    Each rank gets an equal, contiguous share of the cores (``"0|1"`` for 2 ranks on 2 cores, ``"0,1|2,3"`` for 2
    on 4); cores left over by an uneven division stay free for the engine's scheduler process. With fewer cores
    than ranks, ranks share cores round-robin (``"0|1|0|1"``): it runs, slower. Raises ValueError for no cores
    or ranks < 1.
    """
    if ranks < 1:
        raise ValueError(f"ranks must be >= 1, got {ranks}")
    ordered = sorted(set(cores))
    if not ordered:
        raise ValueError("no CPU cores are allowed for this process")
    if len(ordered) < ranks:
        return "|".join(str(ordered[rank % len(ordered)]) for rank in range(ranks))
    share = len(ordered) // ranks
    return "|".join(",".join(str(core) for core in ordered[rank * share : (rank + 1) * share]) for rank in range(ranks))


class CpuThreadBinding(CallbackBase):
    """Ray Serve LLM callback: bind each CPU rank's OpenMP threads to its own cores before the engine starts."""

    async def on_before_node_init(self) -> None:
        engine_kwargs = self.llm_config.engine_kwargs
        ranks = int(engine_kwargs.get("tensor_parallel_size", 1)) * int(engine_kwargs.get("pipeline_parallel_size", 1))
        binding = omp_threads_bind(sorted(os.sched_getaffinity(0)), ranks)
        os.environ[THREADS_BIND_ENV] = binding
        logger.info("lab-llm binds %d CPU rank(s) to cores %s (%s)", ranks, binding, THREADS_BIND_ENV)
