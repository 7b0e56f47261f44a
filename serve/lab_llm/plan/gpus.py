"""The GPU inventory from what Stages 1-2 found, and from short forms people type (``3090,3090`` or ``2x3090``).

Stage 1 (role ``lab.llm.proxmox_gpu_host``) exports ``hostvars[<pve host>].lab_llm_gpus``: one item per card with
``address`` and ``functions[]`` (``vendor_id``, ``device_id``, ``class``, ...). Stage 2 (role ``lab.llm.gpu_vm``)
passes every card of a Proxmox node to the GPU VM whose ``pve_node`` is that node, or takes the cards from
``gpu_vm_gpus`` (``[{path, id: "10de:2204", ...}]``) when the fact is absent. ``playbooks/fit_plan.yml`` hands the
planner one entry per GPU VM: ``{name: <vm>, host: <pve node>, gpus: <those items>}``.

A card's class comes from its PCI vendor:device id through ``PCI_GPU_CLASSES``, never from a guess.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lab_llm.plan.errors import PlanInputError
from lab_llm.plan.inventory import GPU_CLASSES

NVIDIA_VENDOR_ID = "10de"
DISPLAY_CLASS_PREFIX = "03"  # PCI class 0x03xxxx: VGA or 3D controller (the audio function is 0x0403)


@dataclass(frozen=True)
class PciGpu:
    gpu_class: str
    """A key of ``GPU_CLASSES`` (memory and bandwidth from NVIDIA's specification pages)."""
    pci_name: str
    """The device's name in pci.ids, verbatim."""


# PCI device id (NVIDIA, vendor 10de) -> GPU class. Names: pci.ids as pciutils/pciids publishes it (commit
# c1c12547d626, 2026-08-22), one line per id; memory and bandwidth are the class's (GPU_CLASSES). Only ids whose
# pci.ids name pins one memory size are here: "GA104 [GeForce RTX 3060 8GB]" (24c7) and the GDDR6X 3060 Ti (24c9)
# differ from the 12 GB / GDDR6 classes and are left out, so they fail with their id instead of a wrong plan.
PCI_GPU_CLASSES: dict[str, PciGpu] = {
    "2503": PciGpu("rtx-3060", "GA106 [GeForce RTX 3060]"),
    "2504": PciGpu("rtx-3060", "GA106 [GeForce RTX 3060 Lite Hash Rate]"),
    "2509": PciGpu("rtx-3060", "GA106 [GeForce RTX 3060 12GB Rev. 2]"),
    "2544": PciGpu("rtx-3060", "GA106 [GeForce RTX 3060]"),
    "2487": PciGpu("rtx-3060", "GA104 [GeForce RTX 3060]"),
    "2414": PciGpu("rtx-3060-ti", "GA103 [GeForce RTX 3060 Ti]"),
    "2486": PciGpu("rtx-3060-ti", "GA104 [GeForce RTX 3060 Ti]"),
    "2489": PciGpu("rtx-3060-ti", "GA104 [GeForce RTX 3060 Ti Lite Hash Rate]"),
    "2484": PciGpu("rtx-3070", "GA104 [GeForce RTX 3070]"),
    "2488": PciGpu("rtx-3070", "GA104 [GeForce RTX 3070 Lite Hash Rate]"),
    "2206": PciGpu("rtx-3080", "GA102 [GeForce RTX 3080]"),
    "2216": PciGpu("rtx-3080", "GA102 [GeForce RTX 3080 Lite Hash Rate]"),
    "220a": PciGpu("rtx-3080-12gb", "GA102 [GeForce RTX 3080 12GB]"),
    "2204": PciGpu("rtx-3090", "GA102 [GeForce RTX 3090]"),
    "2203": PciGpu("rtx-3090-ti", "GA102 [GeForce RTX 3090 Ti]"),
    "2805": PciGpu("rtx-4060-ti-16gb", "AD106 [GeForce RTX 4060 Ti 16GB]"),
    "2705": PciGpu("rtx-4070-ti-super", "AD103 [GeForce RTX 4070 Ti SUPER]"),
    "2689": PciGpu("rtx-4070-ti-super", "AD102 [GeForce RTX 4070 Ti SUPER]"),
    "2704": PciGpu("rtx-4080", "AD103 [GeForce RTX 4080]"),
    "2684": PciGpu("rtx-4090", "AD102 [GeForce RTX 4090]"),
    "2b85": PciGpu("rtx-5090", "GB202 [GeForce RTX 5090]"),
    "24b0": PciGpu("rtx-a4000", "GA104GL [RTX A4000]"),
    "2231": PciGpu("rtx-a5000", "GA102GL [RTX A5000]"),
    "2230": PciGpu("rtx-a6000", "GA102GL [RTX A6000]"),
    "1b38": PciGpu("tesla-p40", "GP102GL [Tesla P40]"),
    "1eb8": PciGpu("tesla-t4", "TU104GL [Tesla T4]"),
    "20b0": PciGpu("a100-40gb", "GA100 [A100 SXM4 40GB]"),
    "20b1": PciGpu("a100-40gb", "GA100 [A100 PCIe 40GB]"),
    "20f1": PciGpu("a100-40gb", "GA100 [A100 PCIe 40GB]"),
    "20b2": PciGpu("a100-80gb", "GA100 [A100 SXM4 80GB]"),
    "20b5": PciGpu("a100-80gb", "GA100 [A100 PCIe 80GB]"),
    "27b8": PciGpu("l4", "AD104GL [L4]"),
    "26b9": PciGpu("l40s", "AD102GL [L40S]"),
}

_PCI_ID = re.compile(r"^(?:0x)?([0-9a-f]{4})$")


def gpu_class_of_pci_id(vendor_id: str, device_id: str, where: str) -> str:
    """The GPU class of a PCI vendor:device id; PlanInputError naming the id and ``where`` when unknown."""
    vendor, device = str(vendor_id).lower().removeprefix("0x"), str(device_id).lower().removeprefix("0x")
    if vendor != NVIDIA_VENDOR_ID or not _PCI_ID.match(device):
        raise PlanInputError(f"{where}: PCI id {vendor}:{device} is not an NVIDIA GPU (vendor {NVIDIA_VENDOR_ID})")
    known = PCI_GPU_CLASSES.get(device)
    if known is None:
        raise PlanInputError(
            f"{where}: unknown NVIDIA GPU, PCI id {vendor}:{device}; the planner knows "
            f"{', '.join(sorted(PCI_GPU_CLASSES))} - describe this node in lab_llm_gpu_inventory "
            "(gpus: [{class, memory_gib, bandwidth_gbs}])"
        )
    return known.gpu_class


def _card_pci_id(card: Mapping[str, Any], where: str) -> tuple[str, str]:
    """vendor and device id of a card: its display function (lab_llm_gpus) or its ``id`` (gpu_vm_gpus)."""
    functions = card.get("functions")
    if isinstance(functions, Sequence) and functions:
        display = [f for f in functions if str(f.get("class", "")).startswith(DISPLAY_CLASS_PREFIX)]
        first = (display or list(functions))[0]
        return str(first.get("vendor_id", "")), str(first.get("device_id", ""))
    pci_id = str(card.get("id") or "")
    if ":" in pci_id:
        vendor, device = pci_id.split(":", 1)
        return vendor, device
    raise PlanInputError(
        f"{where}: a GPU without functions[].vendor_id/device_id (lab_llm_gpus) or id VENDOR:DEVICE (gpu_vm_gpus)"
    )


def nodes_from_facts(discovered: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Inventory nodes (``{name, gpus: [{class}]}``) from ``[{name, host?, gpus: [lab_llm_gpus or gpu_vm_gpus
    items]}]``; VMs without GPUs are left out."""
    nodes = []
    for entry in discovered:
        name = str(entry.get("name") or "")
        if not name:
            raise PlanInputError(f"discovered GPUs: an entry without a node name: {dict(entry)!r}")
        host = entry.get("host")
        gpus = []
        for card in entry.get("gpus") or ():
            address = card.get("address") or card.get("path") or "?"
            where = f"GPU {address} of {name}" + (f" (Proxmox node {host})" if host else "")
            vendor, device = _card_pci_id(card, where)
            gpus.append({"class": gpu_class_of_pci_id(vendor, device, where)})
        if gpus:
            nodes.append({"name": name, "gpus": gpus})
    return nodes


def merge_inventory(
    discovered: Sequence[Mapping[str, Any]], written: Mapping[str, Any] | None
) -> tuple[dict[str, Any], list[str]]:
    """The inventory to plan on, and notes. The discovered nodes are the base; a node of the hand-written
    inventory (``lab_llm_gpu_inventory``) replaces the discovered node of the same name or adds one, and its
    ``network`` applies. Each replaced node whose cards differ gives a note naming both."""
    written = dict(written or {})
    written_nodes = list(written.get("nodes") or ())
    by_name = {str(node.get("name")): node for node in written_nodes if isinstance(node, Mapping)}
    notes = []
    nodes: list[Mapping[str, Any]] = []
    for entry in discovered:
        override = by_name.pop(str(entry.get("name") or ""), None)
        if override is None:
            nodes += nodes_from_facts([entry])
            continue
        # The hand-written node says what its cards are, so one the table does not know is no error here.
        said = sorted(str(gpu.get("class", "")).lower() for gpu in override.get("gpus") or ())
        try:
            found = sorted(gpu["class"] for node in nodes_from_facts([entry]) for gpu in node["gpus"])
        except PlanInputError:
            where = f"GPU of {entry.get('name')}"
            ids = ", ".join(":".join(_card_pci_id(card, where)).lower() for card in entry.get("gpus") or ())
            notes.append(
                f"{entry.get('name')}: Stages 1-2 found PCI id(s) {ids}, which the planner's table does not know; "
                f"planning with lab_llm_gpu_inventory's {', '.join(said) or 'no GPUs'}"
            )
        else:
            if found != said:
                notes.append(
                    f"{entry.get('name')}: lab_llm_gpu_inventory says {', '.join(said) or 'no GPUs'}, Stages 1-2 "
                    f"found {', '.join(found) or 'no GPUs'}; planning with lab_llm_gpu_inventory's"
                )
        nodes.append(override)
    nodes += [node for node in written_nodes if str(node.get("name")) in by_name]
    return {**written, "nodes": nodes}, notes


def _class_candidates(key: str) -> tuple[str, ...]:
    """Spellings of one card to look up: as typed, without ``rtx``, with ``rtx-``; ``3060ti`` -> ``3060-ti``."""
    base = re.sub(r"^rtx-?(?=[\da-z])", "", key)
    base = re.sub(r"(?<=\d)-?(ti|super)\b", r"-\1", base)
    return (key, base, f"rtx-{base}")


def normalise_gpu_class(text: str) -> str:
    """``3090``, ``rtx3090``, ``RTX-3090``, ``NVIDIA GeForce RTX 3090`` (nvidia-smi's name), ``3090 24GB`` ->
    ``rtx-3090``. A memory size is checked against the class's (``3060 8GB`` is another card than the 12 GB
    ``rtx-3060``); PlanInputError for a class the planner does not know or a size it does not have."""
    key = re.sub(r"[\s_]+", "-", text.strip().lower())
    key = re.sub(r"^(nvidia-)?(geforce-)?", "", key)
    for candidate in _class_candidates(key):
        if candidate in GPU_CLASSES:
            return candidate
    sized = re.fullmatch(r"(.+?)-?(\d+)-?g(?:i?b)?", key)
    if sized:
        memory = int(sized.group(2))
        for candidate in _class_candidates(sized.group(1)):
            if candidate in GPU_CLASSES:
                if GPU_CLASSES[candidate].memory_gib != memory:
                    raise PlanInputError(
                        f"GPU {text!r}: {candidate} has {GPU_CLASSES[candidate].memory_gib:g} GB, not {memory}; "
                        "for another card give its class with memory_gib and bandwidth_gbs in an --inventory file"
                    )
                return candidate
    raise PlanInputError(f"unknown GPU class {text!r}; known: {', '.join(GPU_CLASSES)}")


_NODE_FORM = re.compile(r"^\s*(?:(\d+)\s*[x*]\s*)?(.+?)\s*$", re.IGNORECASE)


def nodes_from_short_forms(gpus: str | None = None, node_specs: Sequence[str] = ()) -> list[dict[str, Any]]:
    """``gpus="3090,3090,3060"`` is one card per node; each ``node_specs`` item (``2x3090``, ``3090+3060``) is one
    node. Nodes are named ``node-0``, ``node-1``... in the order given."""
    nodes: list[dict[str, Any]] = []
    for item in (gpus or "").split(","):
        counted = _NODE_FORM.match(item)
        if counted and counted.group(1):
            compact = re.sub(r"\s+", "", item)
            raise PlanInputError(
                f"--gpus {item.strip()!r}: one card per node, comma-separated; for several cards in one node use "
                f"--node {compact}"
            )
        if item.strip():
            nodes.append({"gpus": [{"class": normalise_gpu_class(item)}]})
    for spec in node_specs:
        cards = []
        for part in spec.split("+"):
            match = _NODE_FORM.match(part)
            if not match or not match.group(2):
                raise PlanInputError(f"--node {spec!r}: expected COUNTxCLASS, e.g. 2x3090 or 2x3090+3060")
            count = int(match.group(1) or 1)
            if count < 1:
                raise PlanInputError(f"--node {spec!r}: the card count must be at least 1")
            cards += [{"class": normalise_gpu_class(match.group(2))}] * count
        nodes.append({"gpus": cards})
    return [{"name": f"node-{i}", **node} for i, node in enumerate(nodes)]
