"""lab.llm.proxmox_pci_mapping against the Proxmox API stand-in: create, converge, one node added
without touching the others, prune, wrong devices refused before any write, check mode, absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.lab.llm.plugins.modules import proxmox_pci_mapping
from tests.module_runner import ModuleExit
from tests.module_runner import run_module_result as run_module_main
from tests.standins.pve.scenario import GPUS, connection_args, gpu_functions, mapping_entry, running_standin


@pytest.fixture
def pve(shared_reference: Path, tmp_path: Path):
    """A stand-in of its own per test: no test sees what another one changed, in any order, in one process or not."""
    with running_standin(shared_reference, tmp_path / "pve") as standin:
        yield standin


def run_module(monkeypatch: pytest.MonkeyPatch, args: dict) -> ModuleExit:
    return run_module_main(monkeypatch, proxmox_pci_mapping.main, args)


def entry(node: str, **extra) -> dict:
    """Only what a user knows for sure; the module reads subsystem id and IOMMU group from the node."""
    return {"node": node, "path": "0000:01:00", "id": GPUS.get(node, (None, "10de:2204"))[1], **extra}


def mapping_args(pve, name: str, entries: list, **extra) -> dict:
    return {**connection_args(pve), "name": name, "map": entries, "_ansible_diff": True, **extra}


def test_create_converge_and_add_a_node_without_touching_the_others(pve, monkeypatch) -> None:
    created = run_module(monkeypatch, mapping_args(pve, "rtx3090", [entry("pve2"), entry("pve3")], description="3090"))
    assert not created.failed, created.result
    assert created.result["changed"] is True
    assert pve.cluster.mappings["rtx3090"]["map"] == [mapping_entry("pve2"), mapping_entry("pve3")]
    assert created.result["diff"]["before"] == {}

    again = run_module(monkeypatch, mapping_args(pve, "rtx3090", [entry("pve2"), entry("pve3")], description="3090"))
    assert again.result["changed"] is False

    # A --limit run for pve4 knows only its own GPU: pve2 and pve3 stay mapped.
    added = run_module(monkeypatch, mapping_args(pve, "rtx3090", [entry("pve4", subsystem_id="3842:3973")]))
    assert added.result["changed"] is True
    assert [line.split(",")[0] for line in pve.cluster.mappings["rtx3090"]["map"]] == [
        "node=pve2", "node=pve3", "node=pve4",
    ]  # fmt: skip
    assert (
        "node=pve4,path=0000:01:00,id=10de:2204,subsystem-id=3842:3973,iommugroup=15"
        in added.result["diff"]["after"]["map"]
    )
    assert pve.cluster.mappings["rtx3090"]["description"] == "3090"

    pruned = run_module(monkeypatch, mapping_args(pve, "rtx3090", [entry("pve2")], prune=True))
    assert pruned.result["changed"] is True
    assert pve.cluster.mappings["rtx3090"]["map"] == [mapping_entry("pve2")]


@pytest.mark.parametrize(
    ("bad_entry", "message"),
    [
        (
            entry("pve1", id="10de:2204"),
            "PCI device 0000:01:00 on node pve1 has vendor:device id 10de:2504, not 10de:2204",
        ),
        (entry("pve2", iommugroup=13), "PCI device 0000:01:00 on node pve2 has IOMMU group 14, not 13 (iommugroup is"),
        (entry("pve2", subsystem_id="1458:403b"), "on node pve2 has subsystem id 1043:87b3, not 1458:403b"),
        (entry("pve2", path="0000:01:00;0000:41:00"), "PCI device 0000:41:00 is not on node pve2"),
        (entry("pve2", path="0000:41:00"), "PCI device 0000:41:00 is not on node pve2"),
        (entry("pve9"), "node 'pve9' is not in the cluster"),
        (entry("pve2", id="10de-2204"), "id '10de-2204' of node pve2 is not VENDOR:DEVICE"),
    ],
)
def test_wrong_devices_fail_before_any_write(pve, monkeypatch, bad_entry: dict, message: str) -> None:
    writes_before = len(pve.cluster.writes())
    outcome = run_module(monkeypatch, mapping_args(pve, "rtx-bad", [entry("pve3"), bad_entry]))
    assert outcome.failed
    assert message in outcome.result["msg"]
    assert outcome.result["msg"].startswith("PCI mapping rtx-bad: ")
    assert pve.cluster.writes()[writes_before:] == []
    assert "rtx-bad" not in pve.cluster.mappings


def test_check_mode_and_absent(pve, monkeypatch) -> None:
    writes_before = len(pve.cluster.writes())
    planned = run_module(monkeypatch, mapping_args(pve, "rtx3060", [entry("pve1")], _ansible_check_mode=True))
    assert planned.result["changed"] is True
    assert pve.cluster.writes()[writes_before:] == []
    assert run_module(monkeypatch, mapping_args(pve, "rtx3060", [entry("pve1")])).result["changed"]
    gone = run_module(monkeypatch, mapping_args(pve, "rtx3060", [], state="absent"))
    assert gone.result["changed"] is True
    assert "rtx3060" not in pve.cluster.mappings
    assert run_module(monkeypatch, mapping_args(pve, "rtx3060", [], state="absent")).result["changed"] is False


def test_entry_of_only_node_path_and_id_gets_what_proxmox_checks_at_start(pve, monkeypatch) -> None:
    # The input: a node whose RTX 3090 reports subsystem 1458:403b in IOMMU group 14.
    pve.cluster.add_node("pve5", gpu_functions("2204", "1458", "403b", 14))
    given = {"node": "pve5", "path": "0000:01:00", "id": "10de:2204"}
    made = run_module(monkeypatch, mapping_args(pve, "rtx3090-pve5", [given]))
    assert not made.failed, made.result
    assert pve.cluster.mappings["rtx3090-pve5"]["map"] == [
        "node=pve5,path=0000:01:00,id=10de:2204,subsystem-id=1458:403b,iommugroup=14"
    ]
    stale = run_module(monkeypatch, mapping_args(pve, "rtx3090-pve5", [{**given, "iommugroup": 13}]))
    assert stale.failed
    assert "has IOMMU group 14, not 13" in stale.result["msg"]


def test_without_the_device_check_the_properties_are_required(pve, monkeypatch) -> None:
    writes_before = len(pve.cluster.writes())
    outcome = run_module(monkeypatch, mapping_args(pve, "rtx-unchecked", [entry("pve2")], check_devices=False))
    assert outcome.failed
    assert "lacks subsystem_id and iommugroup" in outcome.result["msg"]
    assert pve.cluster.writes()[writes_before:] == []
    complete = entry("pve2", subsystem_id="1043:87b3", iommugroup=14)
    assert not run_module(monkeypatch, mapping_args(pve, "rtx-unchecked", [complete], check_devices=False)).failed
