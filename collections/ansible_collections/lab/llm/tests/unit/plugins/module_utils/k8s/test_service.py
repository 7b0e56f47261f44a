"""module_utils/k8s/service.py against the Kubernetes API stand-in: server-side apply, dry run, errors naming the
field or the missing CRD."""

from __future__ import annotations

import pytest

from ansible_collections.lab.llm.plugins.module_utils.k8s import client, service
from ansible_collections.lab.llm.plugins.module_utils.k8s.exceptions import K8sError
from tests.standins.k8s.fixtures import NAMESPACE, deployment
from tests.standins.k8s.server import KubeApiStandIn


def test_apply_creates_then_changes_nothing_then_removes_fields_it_no_longer_sets(
    kube_api: KubeApiStandIn, k8s: service.K8sService
) -> None:
    assert k8s.apply(NAMESPACE)[0] is True
    changed, before, after = k8s.apply(deployment(tier="web"))
    assert (changed, before) == (True, None)
    assert after["metadata"]["labels"] == {"tier": "web"}
    assert k8s.apply(deployment(tier="web"))[0] is False
    changed, before, after = k8s.apply(deployment())
    assert changed is True
    assert "labels" not in after["metadata"] or after["metadata"]["labels"] == {}
    assert kube_api.get("apps/v1", "Deployment", "web", "lab-llm")["metadata"]["generation"] == 1


def test_check_mode_is_a_server_dry_run(kube_api: KubeApiStandIn) -> None:
    dry = service.K8sService(client.connect({}), check_mode=True)
    changed, before, after = dry.apply(NAMESPACE)
    assert (changed, before, after["metadata"]["name"]) == (True, None, "lab-llm")
    assert kube_api.get("v1", "Namespace", "lab-llm") is None
    assert any("dryRun=All" in path for method, path in kube_api.requests if method == "PATCH")


def test_an_invalid_manifest_names_the_object_and_the_field(k8s: service.K8sService) -> None:
    k8s.apply(NAMESPACE)
    bad = deployment()
    bad["spec"]["replicas"] = "three"
    with pytest.raises(K8sError) as error:
        k8s.apply(bad)
    assert str(error.value).startswith("Deployment lab-llm/web: spec.replicas: rejected as invalid (HTTP 422)")


def test_an_unserved_kind_says_which_crd_is_missing(k8s: service.K8sService) -> None:
    with pytest.raises(K8sError, match=r"does not serve kind Issuer in cert-manager.io/v1 \(is its CRD"):
        k8s.resource("cert-manager.io/v1", "Issuer")
