"""module_utils/k8s/client.py: where the connection comes from, and the error when there is none."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.lab.llm.plugins.module_utils.k8s import client
from ansible_collections.lab.llm.plugins.module_utils.k8s.exceptions import K8sError
from tests.standins.k8s import fixtures

kube_api = fixtures.kube_api

NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab-llm"}}


def test_without_any_cluster_configuration_the_error_says_where_it_looked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("K8S_AUTH_KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(K8sError) as error:
        client.connect({})
    assert str(error.value).startswith(
        "no kubeconfig (option kubeconfig, K8S_AUTH_KUBECONFIG or ~/.kube/config) and not running in a cluster"
    )
