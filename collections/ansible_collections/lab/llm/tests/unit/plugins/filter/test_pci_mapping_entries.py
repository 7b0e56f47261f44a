"""lab.llm.pci_mapping_entries: the host stage's GPUs as Proxmox PCI mapping entries."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.lab.llm.plugins.filter.pci_mapping_entries import FilterModule

pci_mapping_entries = FilterModule().filters()["pci_mapping_entries"]


def function(address: str, device: str, subsystem: tuple[str, str] | None = None) -> dict[str, str]:
    entry = {"address": address, "vendor_id": "10de", "device_id": device}
    if subsystem:
        entry.update(subsystem_vendor_id=subsystem[0], subsystem_device_id=subsystem[1])
    return entry


def test_each_card_is_described_by_its_display_function() -> None:
    # The audio function is listed first; the .0 function (the VGA controller) describes the card.
    rtx3090 = {
        "address": "0000:01:00",
        "iommu_group": 12,
        "functions": [
            function("0000:01:00.1", "228b", ("3842", "3973")),
            function("0000:01:00.0", "2204", ("3842", "3973")),
        ],
    }
    assert pci_mapping_entries([rtx3090]) == [
        {"path": "0000:01:00", "id": "10de:2204", "subsystem_id": "3842:3973", "iommugroup": 12}
    ]


def test_without_a_dot_zero_function_the_first_one_counts_and_unknowns_are_null() -> None:
    half_known = {"address": "0000:02:00", "functions": [function("0000:02:00.1", "2504", ("", "1234"))]}
    no_group = {"address": "0000:03:00", "iommu_group": None, "functions": [function("0000:03:00.0", "2504")]}
    assert pci_mapping_entries([half_known, no_group]) == [
        {"path": "0000:02:00", "id": "10de:2504", "subsystem_id": None, "iommugroup": None},
        {"path": "0000:03:00", "id": "10de:2504", "subsystem_id": None, "iommugroup": None},
    ]


@pytest.mark.parametrize(
    ("gpus", "message"),
    [
        ({"address": "0000:01:00"}, "expected a list of GPUs with an address"),
        ([{"functions": []}], "expected a list of GPUs with an address"),
        ([{"address": "0000:01:00", "functions": []}], "GPU 0000:01:00 lists no PCI functions"),
    ],
)
def test_what_is_not_a_list_of_cards_is_refused(gpus: object, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        pci_mapping_entries(gpus)
