"""GPUs from what Stages 1-2 found (PCI ids through one table), hand-written overrides, and the CLI short forms."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.lab.llm.plugins.module_utils.pci import KNOWN_MODELS, PCI_IDS_PATHS, read_pci_ids_names
from lab_llm.plan import PlanInputError
from lab_llm.plan.gpus import (
    PCI_GPU_CLASSES,
    merge_inventory,
    nodes_from_facts,
    nodes_from_short_forms,
    normalise_gpu_class,
)
from lab_llm.plan.inventory import GPU_CLASSES
from lab_llm.plan.spec import plan_from_spec
from tests.unit.serve.plan.plan_inputs import model_path, reference_lab_inventory


def stage1_card(device_id: str, address: str = "0000:01:00", audio: str = "1aef") -> dict[str, Any]:
    """One lab_llm_gpus item as lab.llm.proxmox_gpu_host exports it (the audio function listed first on purpose:
    the class decides which function is the GPU, not the order)."""
    function = {"vendor_id": "10de", "subsystem_vendor_id": "1458", "subsystem_device_id": "403b",
                "driver": "vfio-pci", "iommu_group": 14}  # fmt: skip
    return {
        "address": address,
        "model": None,
        "functions": [
            {**function, "address": f"{address}.1", "device_id": audio, "class": "040300"},
            {**function, "address": f"{address}.0", "device_id": device_id, "class": "030000"},
        ],
        "vfio_ids": [f"10de:{audio}", f"10de:{device_id}"],
        "iommu_group": 14,
        "iommu_group_clean": True,
    }


def reference_lab_facts() -> list[dict[str, Any]]:
    """What fit_plan.yml hands over for the reference lab after Stages 1-2: one card per VM."""
    return [
        {"name": "gpu-3060-1", "host": "pve1", "gpus": [stage1_card("2504", "0000:c1:00", audio="228e")]},
        {"name": "gpu-3090-1", "host": "pve2", "gpus": [stage1_card("2204")]},
        {"name": "gpu-3090-2", "host": "pve3", "gpus": [stage1_card("2204")]},
        # Stage 2's fallback shape when the host fact is absent: gpu_vm_gpus.
        {"name": "gpu-3090-3", "host": "pve4", "gpus": [{"path": "0000:01:00", "id": "10de:2204"}]},
    ]


def test_facts_give_the_reference_lab_inventory() -> None:
    assert nodes_from_facts(reference_lab_facts()) == reference_lab_inventory()["nodes"]


def test_plan_from_facts_equals_plan_from_the_hand_written_inventory() -> None:
    spec = {"config_path": str(model_path("dolphin3-r1-mistral-24b-awq")), "context_length": 32768, "concurrency": 4}
    from_facts = plan_from_spec(spec, {"network": "10gbe"}, discovered_gpus=reference_lab_facts())
    by_hand = plan_from_spec(spec, reference_lab_inventory())
    assert from_facts.model_dump() == by_hand.model_dump()


def test_unknown_pci_id_is_an_error_naming_it() -> None:
    facts = [{"name": "gpu-new", "host": "pve9", "gpus": [stage1_card("2b87")]}]
    with pytest.raises(PlanInputError) as caught:
        nodes_from_facts(facts)
    message = str(caught.value)
    assert message.startswith("GPU 0000:01:00 of gpu-new (Proxmox node pve9): unknown NVIDIA GPU, PCI id 10de:2b87")
    assert "lab_llm_gpu_inventory" in message


def test_a_card_the_table_does_not_know_can_be_described_by_hand() -> None:
    """The unknown-id error says to describe the node in lab_llm_gpu_inventory; done, the plan uses that node (the
    PCI id is named in the notes) instead of failing on the id again. Other nodes still come from the facts."""
    facts = [*reference_lab_facts(), {"name": "gpu-new", "host": "pve9", "gpus": [stage1_card("2208")]}]
    written = {"nodes": [{"name": "gpu-new", "gpus": [{"class": "rtx-3080-ti", "memory_gib": 12,
                                                       "bandwidth_gbs": 912}]}]}  # fmt: skip
    inventory, notes = merge_inventory(facts, written)
    assert [node["name"] for node in inventory["nodes"]][-2:] == ["gpu-3090-3", "gpu-new"]
    assert inventory["nodes"][-1] == written["nodes"][0]
    assert notes == [
        "gpu-new: Stages 1-2 found PCI id(s) 10de:2208, which the planner's table does not know; planning with "
        "lab_llm_gpu_inventory's rtx-3080-ti"
    ]
    spec = {"config_path": str(model_path("llama-3-8b")), "context_length": 8192}
    plan = plan_from_spec(spec, written, discovered_gpus=facts)
    assert notes[0] in plan.notes
    # Without the hand-written node it is still the error naming the id.
    with pytest.raises(PlanInputError, match="PCI id 10de:2208"):
        merge_inventory(facts, {})


def test_an_8gb_rtx_3060_is_not_taken_for_the_12gb_one() -> None:
    with pytest.raises(PlanInputError, match="10de:24c7"):
        nodes_from_facts([{"name": "n", "gpus": [{"path": "0000:01:00", "id": "10de:24c7"}]}])


def test_non_nvidia_or_malformed_ids_are_errors() -> None:
    with pytest.raises(PlanInputError, match="PCI id 1002:744c is not an NVIDIA GPU"):
        nodes_from_facts([{"name": "n", "gpus": [{"path": "0000:03:00", "id": "1002:744c"}]}])
    with pytest.raises(PlanInputError, match="a GPU without functions"):
        nodes_from_facts([{"name": "n", "gpus": [{"address": "0000:03:00"}]}])


def test_hand_written_nodes_override_and_the_difference_is_noted() -> None:
    written = {"network": "25gbe", "nodes": [{"name": "gpu-3090-2", "gpus": [{"class": "rtx-3060"}]},
                                             {"name": "extra", "gpus": [{"class": "rtx-4090"}]}]}  # fmt: skip
    inventory, notes = merge_inventory(reference_lab_facts(), written)
    assert inventory["network"] == "25gbe"
    assert [node["name"] for node in inventory["nodes"]] == ["gpu-3060-1", "gpu-3090-1", "gpu-3090-2", "gpu-3090-3",
                                                             "extra"]  # fmt: skip
    assert inventory["nodes"][2]["gpus"] == [{"class": "rtx-3060"}]
    assert notes == [
        "gpu-3090-2: lab_llm_gpu_inventory says rtx-3060, Stages 1-2 found rtx-3090; planning with "
        "lab_llm_gpu_inventory's"
    ]
    same, quiet = merge_inventory(reference_lab_facts(), reference_lab_inventory())
    assert quiet == []
    assert same["nodes"] == reference_lab_inventory()["nodes"]


def test_merge_notes_reach_the_plan() -> None:
    spec = {"config_path": str(model_path("llama-3-8b")), "context_length": 8192}
    written = {"nodes": [{"name": "gpu-3090-1", "gpus": [{"class": "rtx-4090"}]}]}
    plan = plan_from_spec(spec, written, discovered_gpus=reference_lab_facts())
    assert any(note.startswith("gpu-3090-1: lab_llm_gpu_inventory says rtx-4090") for note in plan.notes)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [("3090", "rtx-3090"), ("RTX3090", "rtx-3090"), ("rtx-3090", "rtx-3090"), ("3060ti", "rtx-3060-ti"),
     ("3060 Ti", "rtx-3060-ti"), ("a100-80gb", "a100-80gb"), ("L4", "l4"), ("4060-ti-16gb", "rtx-4060-ti-16gb"),
     # as people type them and as nvidia-smi names them: maker prefix, memory suffix, no separators
     ("3090 24GB", "rtx-3090"), ("3090 24 GB", "rtx-3090"), ("3060 12GB", "rtx-3060"), ("rtx3060ti", "rtx-3060-ti"),
     ("NVIDIA GeForce RTX 3090", "rtx-3090"), ("GeForce RTX 4090", "rtx-4090"), ("NVIDIA RTX A6000", "rtx-a6000"),
     ("a6000", "rtx-a6000"), ("3080 12GB", "rtx-3080-12gb"), ("4060 Ti 16GB", "rtx-4060-ti-16gb"),
     ("NVIDIA A100 80GB", "a100-80gb"), ("4070 Ti SUPER", "rtx-4070-ti-super")],
)  # fmt: skip
def test_gpu_class_short_names(typed: str, expected: str) -> None:
    assert normalise_gpu_class(typed) == expected


def test_short_forms() -> None:
    assert nodes_from_short_forms("3090,3090,3090,3060") == [
        {"name": f"node-{i}", "gpus": [{"class": c}]}
        for i, c in enumerate(["rtx-3090", "rtx-3090", "rtx-3090", "rtx-3060"])
    ]
    assert nodes_from_short_forms(None, ["2x3090", "2x3090+3060"]) == [
        {"name": "node-0", "gpus": [{"class": "rtx-3090"}] * 2},
        {"name": "node-1", "gpus": [{"class": "rtx-3090"}] * 2 + [{"class": "rtx-3060"}]},
    ]
    with pytest.raises(PlanInputError, match="unknown GPU class '3095'"):
        nodes_from_short_forms("3090,3095")
    with pytest.raises(PlanInputError, match="at least 1"):
        nodes_from_short_forms(None, ["0x3090"])
    # A count in --gpus is a node of several cards: say which option takes it instead of "unknown GPU class '2x3090'".
    with pytest.raises(PlanInputError, match=r"--gpus '2x3090': one card per node.*--node 2x3090"):
        nodes_from_short_forms("2x3090,3060")


@pytest.mark.parametrize(
    ("typed", "problem"),
    [("3060 8GB", "rtx-3060 has 12 GB, not 8"), ("3090 48GB", "rtx-3090 has 24 GB, not 48"),
     ("GeForce RTX 3095", "unknown GPU class 'GeForce RTX 3095'")],
)  # fmt: skip
def test_gpu_class_memory_that_does_not_match_is_refused(typed: str, problem: str) -> None:
    """The 8 GB RTX 3060 is another card than the 12 GB one: a memory size the class does not have is an error,
    not a plan for the bigger card."""
    with pytest.raises(PlanInputError, match=re.escape(problem)):
        normalise_gpu_class(typed)


def test_every_table_entry_names_a_known_class_matching_its_pci_name() -> None:
    """The class is the pci.ids name in lab-llm's spelling: 'GA102 [GeForce RTX 3090]' -> rtx-3090."""
    for device, entry in PCI_GPU_CLASSES.items():
        assert re.fullmatch(r"[0-9a-f]{4}", device)
        assert entry.gpu_class in GPU_CLASSES
        bracketed = re.search(r"\[(.*)\]", entry.pci_name)
        assert bracketed, entry
        name = bracketed.group(1).lower().replace("geforce ", "").replace(" lite hash rate", "")
        name = re.sub(r" rev\. \d+$", "", name).replace("tesla ", "tesla-").replace(" ", "-")
        name = name.replace("rtx-3060-12gb", "rtx-3060").replace("a100-sxm4-", "a100-").replace("a100-pcie-", "a100-")
        assert name == entry.gpu_class, (device, entry)


def test_table_agrees_with_the_collections_names() -> None:
    """The Stage 1 module names cards from its own fallback table; both tables must say the same."""
    for vendor_device, model in KNOWN_MODELS.items():
        device = vendor_device.split(":")[1]
        if device in PCI_GPU_CLASSES:
            assert PCI_GPU_CLASSES[device].pci_name.endswith(f"[{model}]"), vendor_device


def test_table_agrees_with_the_systems_pci_ids() -> None:
    if not any(Path("/", relative).is_file() for relative in PCI_IDS_PATHS):
        pytest.skip("no pci.ids on this machine (apt-get install pci.ids)")
    names = read_pci_ids_names("/", {f"10de:{device}" for device in PCI_GPU_CLASSES})
    # Debian 12's pci.ids (2023.04) predates some cards in the table (RTX 4070 Ti SUPER, 5090, L40S): those are
    # absent, not different. Every card it does know must carry the table's name.
    assert {"10de:2204", "10de:2504"} <= set(names)
    for device, entry in PCI_GPU_CLASSES.items():
        if f"10de:{device}" in names:
            assert entry.pci_name.endswith(f"[{names[f'10de:{device}']}]"), device
