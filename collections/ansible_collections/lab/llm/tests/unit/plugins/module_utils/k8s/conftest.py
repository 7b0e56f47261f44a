"""The Kubernetes API stand-in for the module_utils/k8s tests, and a K8sService connected to it."""

from __future__ import annotations

import pytest

from ansible_collections.lab.llm.plugins.module_utils.k8s import client, service
from tests.standins.k8s import fixtures
from tests.standins.k8s.server import KubeApiStandIn

kube_api = fixtures.kube_api


@pytest.fixture
def k8s(kube_api: KubeApiStandIn) -> service.K8sService:
    """A K8sService of the stand-in (K8S_AUTH_KUBECONFIG points at it)."""
    return service.K8sService(client.connect({}))
