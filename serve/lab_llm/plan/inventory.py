"""The GPUs the planner may use: nodes, their cards, the links between them, and the user's limits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lab_llm.plan.errors import PlanInputError


@dataclass(frozen=True)
class GpuClass:
    """Published figures of a card. ``cuda_total_gib`` is what CUDA reports as total memory, a little
    under the marketing size: PyTorch's out-of-memory messages say "23.69 GiB total capacity" on an
    RTX 3090 and "11.76 GiB" on an RTX 3060 12 GB."""

    memory_gib: float
    cuda_total_gib: float
    bandwidth_gbs: float


# Memory bandwidth from NVIDIA's specification pages (GDDR6X/GDDR6 bus x data rate).
GPU_CLASSES: dict[str, GpuClass] = {
    "rtx-3060": GpuClass(12, 11.76, 360),
    "rtx-3060-ti": GpuClass(8, 7.79, 448),
    "rtx-3070": GpuClass(8, 7.79, 448),
    "rtx-3080": GpuClass(10, 9.77, 760),
    "rtx-3080-12gb": GpuClass(12, 11.76, 912),
    "rtx-3090": GpuClass(24, 23.69, 936),
    "rtx-3090-ti": GpuClass(24, 23.69, 1008),
    "rtx-4060-ti-16gb": GpuClass(16, 15.70, 288),
    "rtx-4070-ti-super": GpuClass(16, 15.70, 672),
    "rtx-4080": GpuClass(16, 15.70, 717),
    "rtx-4090": GpuClass(24, 23.65, 1008),
    "rtx-5090": GpuClass(32, 31.37, 1792),
    "rtx-a4000": GpuClass(16, 15.72, 448),
    "rtx-a5000": GpuClass(24, 23.68, 768),
    "rtx-a6000": GpuClass(48, 47.54, 768),
    "tesla-p40": GpuClass(24, 22.38, 347),
    "tesla-t4": GpuClass(16, 14.75, 320),
    "a100-40gb": GpuClass(40, 39.39, 1555),
    "a100-80gb": GpuClass(80, 79.14, 2039),
    "l4": GpuClass(24, 22.03, 300),
    "l40s": GpuClass(48, 44.39, 864),
}


@dataclass(frozen=True)
class LinkClass:
    """A link's usable one-way bandwidth and the latency of one small collective over it (NCCL)."""

    bandwidth_gbs: float
    latency_us: float


# Ethernet: line rate / 8. Latency: one small NCCL collective or send/recv. Inside a host it is tens of
# microseconds: a few over NVLink; more over PCIe on GeForce cards, whose driver disables peer-to-peer, so vLLM's
# custom all-reduce is off and NCCL goes through host memory (see noonghunna/club-3090#922 on patched P2P).
# Between hosts without RDMA NCCL falls back to TCP sockets ("NET/Socket" in NCCL_DEBUG logs,
# vllm-project/vllm#6610): a proxy thread and a TCP round trip per ring step cost a few hundred microseconds
# whatever the line rate. These latencies are assumptions of this planner, not measurements.
LINK_CLASSES: dict[str, LinkClass] = {
    "nvlink": LinkClass(56, 8),
    "pcie": LinkClass(25, 40),
    "pcie4": LinkClass(25, 40),
    "pcie3": LinkClass(12, 45),
    "1gbe": LinkClass(0.125, 300),
    "2.5gbe": LinkClass(0.3125, 280),
    "10gbe": LinkClass(1.25, 250),
    "25gbe": LinkClass(3.125, 200),
    "40gbe": LinkClass(5, 180),
    "100gbe": LinkClass(12.5, 150),
    "infiniband": LinkClass(25, 10),
}


class Link(BaseModel):
    """A named link class, or one given by its figures."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "10gbe"
    bandwidth_gbs: float = Field(default=0, ge=0, description="0 takes the figure of the named class.")
    latency_us: float = Field(default=0, ge=0, description="0 takes the figure of the named class.")

    @model_validator(mode="after")
    def _known_or_given(self) -> Link:
        if self.name.lower() not in LINK_CLASSES and not (self.bandwidth_gbs and self.latency_us):
            raise ValueError(
                f"unknown link {self.name!r}: give bandwidth_gbs and latency_us, or one of {', '.join(LINK_CLASSES)}"
            )
        return self

    @property
    def bandwidth(self) -> float:
        return self.bandwidth_gbs or LINK_CLASSES[self.name.lower()].bandwidth_gbs

    @property
    def latency(self) -> float:
        return self.latency_us or LINK_CLASSES[self.name.lower()].latency_us


def _coerce_link(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class Gpu(BaseModel):
    """One card. Only ``gpu_class`` is needed for a known class; give ``memory_gib`` (marketing size)
    and ``bandwidth_gbs`` for others."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    gpu_class: str = Field(alias="class", min_length=1)
    memory_gib: float = Field(default=0, ge=0)
    bandwidth_gbs: float = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _known_or_given(self) -> Gpu:
        if self.gpu_class.lower() not in GPU_CLASSES and not (self.memory_gib and self.bandwidth_gbs):
            raise ValueError(
                f"unknown GPU class {self.gpu_class!r}: give memory_gib and bandwidth_gbs, or use one of "
                f"{', '.join(GPU_CLASSES)}"
            )
        return self

    @property
    def total_gib(self) -> float:
        """Memory as CUDA reports it: the catalogue figure, or 98.7 % of the marketing size."""
        known = GPU_CLASSES.get(self.gpu_class.lower())
        if known and (not self.memory_gib or self.memory_gib == known.memory_gib):
            return known.cuda_total_gib
        return round(self.memory_gib * 0.987, 2)

    @property
    def bandwidth(self) -> float:
        return self.bandwidth_gbs or GPU_CLASSES[self.gpu_class.lower()].bandwidth_gbs


class Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    gpus: tuple[Gpu, ...]
    link: Link = Field(default_factory=lambda: Link(name="pcie"), description="Between the GPUs of this node.")

    @model_validator(mode="before")
    @classmethod
    def _links(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "link" in data:
            data = {**data, "link": _coerce_link(data["link"])}
        return data


class GpuInventory(BaseModel):
    """Nodes with GPUs, and the network between nodes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nodes: tuple[Node, ...]
    network: Link = Field(default_factory=lambda: Link(name="10gbe"), description="Between nodes.")

    @model_validator(mode="before")
    @classmethod
    def _links(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "network" in data:
            data = {**data, "network": _coerce_link(data["network"])}
        return data

    @model_validator(mode="after")
    def _has_gpus(self) -> GpuInventory:
        if not any(node.gpus for node in self.nodes):
            raise ValueError("the inventory has no GPUs")
        names = [node.name for node in self.nodes]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"node names appear twice: {', '.join(duplicates)}")
        return self


class Limits(BaseModel):
    """What the user allows the plan to use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu_memory_utilization: float = Field(default=0.95, gt=0.1, le=0.99, description="Ceiling; vLLM default 0.9.")
    cpu_offload_gib: float = Field(default=0, ge=0, description="CPU RAM per GPU the plan may offload weights to.")
    allow_tp_over_network: bool = False
    max_num_seqs: int = Field(default=256, gt=0, description="vLLM's default for the OpenAI server on <70 GiB cards.")
    max_num_batched_tokens: int = Field(default=2048, gt=0, description="Same default; sizes the profiling pass.")
    enforce_eager: bool = False


def _validation_message(what: str, error: ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or what}: {item['msg']}" for item in error.errors()
    )
    return f"{what} is invalid: {problems}"


def load_inventory(source: GpuInventory | Mapping[str, Any] | str | Path) -> GpuInventory:
    """An inventory from a model, a mapping, or a YAML/JSON file (``nodes: [{name, gpus: [...]}]``)."""
    if isinstance(source, GpuInventory):
        return source
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise PlanInputError(f"GPU inventory {str(path)!r} is not readable YAML: {error}") from error
        if not isinstance(data, Mapping):
            raise PlanInputError(f"GPU inventory {str(path)!r} is not a mapping with a 'nodes' list")
        source = data
    if not source.get("nodes"):
        raise PlanInputError("GPU inventory has no nodes (zero GPUs): nothing to plan on")
    try:
        return GpuInventory.model_validate(source)
    except ValidationError as error:
        raise PlanInputError(_validation_message("GPU inventory", error)) from error


def load_limits(source: Limits | Mapping[str, Any] | None) -> Limits:
    if source is None:
        return Limits()
    if isinstance(source, Limits):
        return source
    try:
        return Limits.model_validate(source)
    except ValidationError as error:
        raise PlanInputError(_validation_message("limits", error)) from error
