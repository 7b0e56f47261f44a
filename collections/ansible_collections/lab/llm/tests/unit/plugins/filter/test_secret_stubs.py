"""lab.llm.secret_stubs: Secret manifests that name the Secrets and carry nothing."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.lab.llm.plugins.filter.secret_stubs import FilterModule


def test_one_stub_per_name_in_order_without_data() -> None:
    stubs = FilterModule().filters()["secret_stubs"](["lab-llm-auth-store", "lab-llm-signing-keys"], "lab-llm")
    assert stubs == [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": name, "namespace": "lab-llm", "labels": {"app.kubernetes.io/managed-by": "lab-llm"}},
        }
        for name in ("lab-llm-auth-store", "lab-llm-signing-keys")
    ]


@pytest.mark.parametrize("names", ["lab-llm-auth-store", [""], [{"name": "x"}]])
def test_anything_but_a_list_of_names_is_refused(names: object) -> None:
    with pytest.raises(AnsibleFilterError, match="secret_stubs: expected a list of Secret names"):
        FilterModule().filters()["secret_stubs"](names, "lab-llm")
