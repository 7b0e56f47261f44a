"""The Kubernetes stand-in refuses what the real API server and admission refuse (admission.py cites each rule), and
lab.llm.k8s_apply reports it naming the object and the field, with nothing changed."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ansible_collections.lab.llm.plugins.modules import k8s_apply
from tests.module_runner import run_module
from tests.standins.k8s import fixtures
from tests.standins.k8s.server import KubeApiStandIn

kube_api = fixtures.kube_api

NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab-llm"}}
PVC = {
    "apiVersion": "v1",
    "kind": "PersistentVolumeClaim",
    "metadata": {"name": "lab-llm-auth", "namespace": "lab-llm"},
    "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
}
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "openwebui", "namespace": "lab-llm"},
    "spec": {
        "selector": {"matchLabels": {"app": "a"}},
        "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
    },
}


def apply(*manifests: dict[str, Any]) -> dict[str, Any]:
    return run_module(k8s_apply.main, {"manifests": list(manifests)})


def changed(manifest: dict[str, Any], edit: Any) -> dict[str, Any]:
    copied = copy.deepcopy(manifest)
    edit(copied)
    return copied


def test_a_pvcs_spec_is_immutable_but_its_storage_may_grow(kube_api: KubeApiStandIn) -> None:
    assert not apply(NAMESPACE, PVC).get("failed")
    other_class = changed(PVC, lambda m: m["spec"].update(storageClassName="ceph-fs"))
    result = apply(other_class)
    assert result["failed"] is True
    assert result["msg"].startswith(
        "PersistentVolumeClaim lab-llm/lab-llm-auth: spec: rejected as invalid (HTTP 422): "
    )
    assert "spec is immutable after creation except resources.requests" in result["msg"]
    assert "storageClassName" not in kube_api.get("v1", "PersistentVolumeClaim", "lab-llm-auth", "lab-llm")["spec"]
    shrunk = changed(PVC, lambda m: m["spec"]["resources"]["requests"].update(storage="512Mi"))
    assert "can not be less than previous value" in apply(shrunk)["msg"]
    grown = changed(PVC, lambda m: m["spec"]["resources"]["requests"].update(storage="2Gi"))
    assert apply(grown)["changed"] is True


def test_a_deployments_selector_is_immutable(kube_api: KubeApiStandIn) -> None:
    assert not apply(NAMESPACE, DEPLOYMENT).get("failed")
    relabelled = changed(DEPLOYMENT, lambda m: m["spec"]["selector"]["matchLabels"].update(app="b"))
    relabelled["spec"]["template"]["metadata"]["labels"]["app"] = "b"
    result = apply(relabelled)
    assert result["failed"] is True
    assert result["msg"].startswith("Deployment lab-llm/openwebui: spec.selector: rejected as invalid (HTTP 422)")
    assert "field is immutable" in result["msg"]


def test_a_secrets_type_is_immutable(kube_api: KubeApiStandIn) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": "s", "namespace": "lab-llm"}}
    assert not apply(NAMESPACE, secret).get("failed")
    result = apply(dict(secret, type="kubernetes.io/tls"))
    assert result["failed"] is True
    assert result["msg"].startswith("Secret lab-llm/s: type: rejected as invalid (HTTP 422)")


@pytest.mark.parametrize(
    ("manifest", "field"),
    [
        # An inventory host name as Ansible allows it, not as Kubernetes does.
        (
            {
                "apiVersion": "deckhouse.io/v1alpha2",
                "kind": "StaticInstance",
                "metadata": {"name": "GPU_3090_1"},
                "spec": {"address": "192.0.2.31", "credentialsRef": {"kind": "SSHCredentials", "name": "x"}},
            },
            "metadata.name",
        ),
        ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab.llm"}}, "metadata.name"),
        (
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "x", "labels": {"lab-llm.io/gpu": "RTX 3090"}},
            },
            "metadata.labels[lab-llm.io/gpu]",
        ),
    ],
)
def test_names_and_labels_follow_kubernetes_syntax(
    kube_api: KubeApiStandIn, manifest: dict[str, Any], field: str
) -> None:
    result = apply(manifest)
    assert result["failed"] is True
    assert f": {field}: rejected as invalid (HTTP 422)" in result["msg"]
    assert "rejected as invalid (HTTP 422)" in result["msg"]


def test_deckhouse_refuses_privileged_pods_unless_the_namespace_allows_them(kube_api: KubeApiStandIn) -> None:
    pod_spec = {"containers": [{"name": "toolkit", "image": "i", "securityContext": {"privileged": True}}]}

    def pod(namespace: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": namespace}, "spec": pod_spec}

    upstream_only = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "a", "labels": {"pod-security.kubernetes.io/enforce": "privileged"}},
    }
    deckhouse = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "b", "labels": {"security.deckhouse.io/pod-policy": "privileged"}},
    }
    assert not apply(upstream_only, deckhouse).get("failed")
    refused = apply(pod("a"))
    assert refused["failed"] is True
    assert "forbidden (HTTP 403)" in refused["msg"]
    assert "violates the baseline pod policy" in refused["msg"]
    assert kube_api.get("v1", "Pod", "p", "a") is None
    assert apply(pod("b"))["changed"] is True


def crd(*versions: tuple[str, bool]) -> dict[str, Any]:
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.org"},
        "spec": {
            "group": "example.org",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": n, "served": True, "storage": s, "schema": schema} for n, s in versions],
        },
    }


def test_a_crd_upgrade_may_not_drop_a_version_still_stored(kube_api: KubeApiStandIn) -> None:
    assert not apply(crd(("v1alpha1", True))).get("failed")
    stored = kube_api.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", "widgets.example.org")
    assert stored["status"]["storedVersions"] == ["v1alpha1"]
    assert not apply(crd(("v1alpha1", False), ("v1", True))).get("failed")
    result = apply(crd(("v1", True)))
    assert result["failed"] is True
    assert ": status.storedVersions[0]: rejected as invalid (HTTP 422)" in result["msg"]
    assert "'v1alpha1': must appear in spec.versions" in result["msg"]
    two_storage = apply(crd(("v1alpha1", True), ("v1", True)))
    assert "exactly one version marked as storage version" in two_storage["msg"]
