"""lab.llm.hostpci_entries: a GPU VM's hostpci entries by mapping or by raw address (what hostpci.j2 built)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.lab.llm.plugins.filter.hostpci_entries import FilterModule

hostpci_entries = FilterModule().filters()["hostpci_entries"]

DEVICES = [{"path": "0000:01:00", "id": "10de:2204"}, {"path": "0000:02:00", "id": "10de:2204"}]


@pytest.mark.parametrize("x_vga", [True, False])
def test_with_a_mapping_every_card_is_one_entry_of_it(x_vga: bool) -> None:
    assert hostpci_entries(DEVICES, "rtx3090", x_vga) == [{"mapping": "rtx3090", "pcie": True, "x_vga": x_vga}] * 2


@pytest.mark.parametrize("x_vga", [True, False])
def test_without_a_mapping_each_card_is_passed_by_its_address(x_vga: bool) -> None:
    assert hostpci_entries(DEVICES, "", x_vga) == [
        {"host": "0000:01:00", "pcie": True, "x_vga": x_vga},
        {"host": "0000:02:00", "pcie": True, "x_vga": x_vga},
    ]


def test_no_cards_no_entries() -> None:
    assert hostpci_entries([], "rtx3090", False) == []


@pytest.mark.parametrize(
    ("devices", "mapping", "message"),
    [
        ("0000:01:00", "rtx3090", "expected a list of GPUs"),
        ([{"id": "10de:2204"}], "", "without a mapping every GPU needs its path; GPU 0 has none"),
    ],
)
def test_bad_input_is_refused(devices: object, mapping: str, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        hostpci_entries(devices, mapping, False)
