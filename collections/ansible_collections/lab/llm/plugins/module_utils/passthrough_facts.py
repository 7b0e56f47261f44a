# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The flow of lab.llm.gpu_passthrough_facts: read a host's CPU, IOMMU, boot loader and NVIDIA cards into one fact.

Reads only; the sysfs and procfs trees below ``root``, the configuration (pci.ids, modprobe.d, boot files) below
``config_root``.
"""

from __future__ import annotations

import os

from ansible_collections.lab.llm.plugins.module_utils.bootloader import detect_boot_loader
from ansible_collections.lab.llm.plugins.module_utils.iommu import (
    check_card_group,
    cpu_vendor,
    read_iommu_state,
)
from ansible_collections.lab.llm.plugins.module_utils.pci import (
    host_modules,
    model_names,
    nvidia_gpu_cards,
    read_all_functions,
    read_pci_aliases,
    read_vfio_pci_ids_options,
)


class FactsError(Exception):
    """The trees cannot be read; the message names ``root``."""


def gather(root: str, config_root: str) -> dict:
    """The ``gpu_passthrough`` fact of the host whose trees are below ``root`` and ``config_root``.

    Raises FactsError when ``root`` has no ``proc/`` and ``sys/``, or when reading them fails (OSError, or a
    ValueError from a malformed file).
    """
    if not os.path.isdir(os.path.join(root, "proc")) or not os.path.isdir(os.path.join(root, "sys")):
        raise FactsError(f"root={root!r} has no proc/ and sys/ directories to read")
    try:
        return discover(root, config_root)
    except (OSError, ValueError) as error:
        raise FactsError(f"cannot read PCI/IOMMU state below root={root!r}: {error}") from error


def discover(root: str, config_root: str) -> dict:
    """The whole ``gpu_passthrough`` fact."""
    functions = read_all_functions(root)
    cards = nvidia_gpu_cards(functions)
    names = model_names(config_root, {f.vendor_device for card in cards for f in card.functions})
    aliases = read_pci_aliases(root)
    gpus = []
    for card in cards:
        group = check_card_group(root, card, functions)
        ids = {f.vendor_device for f in card.functions}
        own = {f.address for f in card.functions}
        function_facts = [
            dict(f.as_dict(), name=names.get(f.vendor_device), host_drivers=host_modules(f, aliases))
            for f in card.functions
        ]
        gpus.append(
            {
                "address": card.slot,
                "model": names.get(card.display_function.vendor_device),
                "functions": function_facts,
                "vfio_ids": sorted(ids),
                "host_drivers": sorted({m for f in function_facts for m in f["host_drivers"]}),
                "same_ids_elsewhere": sorted(
                    address for address, f in functions.items() if f.vendor_device in ids and address not in own
                ),
                "bound_to_vfio": all(f.driver == "vfio-pci" for f in card.functions),
                "iommu_group": group.group,
                "iommu_group_members": group.members,
                "iommu_group_clean": group.clean,
                "foreign_devices": [
                    {
                        k: v
                        for k, v in f.as_dict().items()
                        if k in ("address", "vendor_id", "device_id", "class", "driver")
                    }
                    for f in group.foreign
                ],
            }
        )
    return {
        "cpu_vendor": cpu_vendor(root),
        "iommu": read_iommu_state(root).as_dict(),
        "boot_loader": detect_boot_loader(root, config_root).as_dict(),
        "gpus": gpus,
        "vfio_pci_ids_options": read_vfio_pci_ids_options(config_root),
    }
