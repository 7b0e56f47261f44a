"""module_utils/k8s/rayservice.py: memory quantities, read by the kubernetes client's parser, and what a worker pod
of a group asks for."""

from __future__ import annotations

import pytest

from ansible_collections.lab.llm.plugins.module_utils.k8s.rayservice import RenderError, quantity_bytes, worker_memory


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        ("32Gi", 32 * 2**30),
        ("32768Mi", 32 * 2**30),
        ("1.5Gi", 3 * 2**29),
        ("64G", 64 * 10**9),
        ("1Pi", 2**50),
        ("1e9", 10**9),
        ("1073741824", 2**30),
        (1073741824, 2**30),
    ],
)
def test_memory_quantities_in_every_form_kubernetes_accepts(quantity: str | int, expected: int) -> None:
    assert quantity_bytes(quantity, "worker_memory") == expected


@pytest.mark.parametrize(
    ("quantity", "message"),
    [
        ("lots", "worker_memory='lots' is not a memory quantity (for example 32Gi)"),
        ("32 Gi", "worker_memory='32 Gi' is not a memory quantity (for example 32Gi)"),
        ("32gi", "worker_memory='32gi' is not a memory quantity (for example 32Gi)"),
        ("1_000", "worker_memory='1_000' is not a memory quantity (for example 32Gi)"),
        ("Infinity", "worker_memory='Infinity' is not a memory quantity (for example 32Gi)"),
        ("0", "worker_memory='0' is no memory: a memory quantity is more than 0 bytes (for example 32Gi)"),
        ("-1Gi", "worker_memory='-1Gi' is no memory: a memory quantity is more than 0 bytes (for example 32Gi)"),
        (
            "512m",
            "worker_memory='512m' is 0.512 bytes, a fraction of a byte: the suffix m means milli; mega is M, mebi Mi "
            "(for example 32Gi)",
        ),
    ],
)
def test_bad_quantities_are_named_with_what_is_wrong(quantity: str, message: str) -> None:
    with pytest.raises(RenderError) as error:
        quantity_bytes(quantity, "worker_memory")
    assert str(error.value) == message


def test_a_worker_gets_what_its_node_has_less_the_reserve() -> None:
    spec = {"worker_memory": "32Gi", "node_reserved_memory": "1.5Gi"}
    assert worker_memory(spec, {"gpu_class": "rtx-3090", "node_memory": "64G"}) == "%dMi" % (
        (64 * 10**9 - 3 * 2**29) // 2**20
    )
