"""PCI reading helpers: slot grouping, pci.ids parsing, and our model table checked against pci.ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.lab.llm.plugins.module_utils.pci import (
    KNOWN_MODELS,
    PCI_IDS_PATHS,
    nvidia_gpu_cards,
    read_all_functions,
    read_pci_ids_names,
)
from tests.fixtures.sysfs.sysfs_tree import PRESETS, build_tree


def test_cards_group_functions_by_slot_and_skip_other_vendors(tmp_path):
    functions = read_all_functions(str(build_tree(tmp_path, PRESETS["intel-3090-clean"])))
    assert set(functions) == {"0000:00:01.0", "0000:00:17.0", "0000:01:00.0", "0000:01:00.1", "0000:04:00.0"}
    cards = nvidia_gpu_cards(functions)
    assert [(card.slot, [f.address for f in card.functions]) for card in cards] == [
        ("0000:01:00", ["0000:01:00.0", "0000:01:00.1"])
    ]
    assert cards[0].display_function.address == "0000:01:00.0"
    assert functions["0000:00:01.0"].is_bridge
    assert not functions["0000:01:00.1"].is_bridge


def test_no_pci_bus_means_no_functions(tmp_path):
    assert read_all_functions(str(tmp_path)) == {}


def test_pci_ids_parser_reads_only_the_wanted_vendor_section(tmp_path):
    path = tmp_path / "usr" / "share" / "hwdata" / "pci.ids"
    path.parent.mkdir(parents=True)
    path.write_text(
        "#\tList of PCI ID's\n"
        "1002  Advanced Micro Devices, Inc. [AMD/ATI]\n\t2204  not NVIDIA\n"
        "10de  NVIDIA Corporation\n\t2204  GA102 [GeForce RTX 3090]\n\t\t1458 403b  GA102 [Gigabyte]\n"
        "\t228e  GA106 High Definition Audio Controller\n"
        "C 03  Display controller\n\t00  VGA compatible controller\n"
    )
    assert read_pci_ids_names(str(tmp_path), {"10de:2204", "10de:228e", "10de:ffff"}) == {
        "10de:2204": "GeForce RTX 3090",
        "10de:228e": "GA106 High Definition Audio Controller",
    }


def test_known_models_match_the_systems_pci_ids():
    """The fallback table must say what pci.ids says (Debian package pci.ids or hwdata)."""
    if not any(Path("/", relative).is_file() for relative in PCI_IDS_PATHS):
        pytest.skip("no pci.ids on this machine (apt-get install pci.ids)")
    assert read_pci_ids_names("/", set(KNOWN_MODELS)) == KNOWN_MODELS
