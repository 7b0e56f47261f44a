"""module_utils/k8s: server-side apply, dry run, errors naming the field, and the watch-based waiter, against the
Kubernetes API stand-in; plus lab.llm.k8s_apply (apply, idempotence, render mode, Secret data kept out of diffs)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.lab.llm.plugins.module_utils.k8s import client, service, waiter
from ansible_collections.lab.llm.plugins.module_utils.k8s.exceptions import K8sError, WaitFailed, WaitTimeout
from ansible_collections.lab.llm.plugins.modules import k8s_apply
from tests.module_runner import run_module
from tests.standins.k8s import fixtures
from tests.standins.k8s.fixtures import later
from tests.standins.k8s.server import KubeApiStandIn

kube_api = fixtures.kube_api

NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab-llm"}}


def deployment(replicas: int = 1, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "lab-llm", "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
        },
    }


@pytest.fixture
def k8s(kube_api: KubeApiStandIn) -> service.K8sService:
    return service.K8sService(client.connect({}))


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


def test_waiter_follows_the_watch_and_reports_deletion_as_state(
    kube_api: KubeApiStandIn, k8s: service.K8sService
) -> None:
    k8s.apply(NAMESPACE)
    k8s.apply(deployment())
    later(
        0.2,
        lambda: kube_api.set_status(
            "apps/v1",
            "Deployment",
            "web",
            {"observedGeneration": 1, "availableReplicas": 1, "updatedReplicas": 1},
            "lab-llm",
        ),
    )
    started = time.monotonic()
    waiter.wait_for(k8s, "apps/v1", "Deployment", "web", "lab-llm", waiter.deployment_available, 5)
    assert time.monotonic() - started < 3  # woken by the watch event, not by the deadline

    def gone(obj: dict[str, Any] | None) -> tuple[bool, str | None, str]:
        return False, ("deleted" if obj is None else None), "present"

    later(0.2, lambda: k8s.delete("apps/v1", "Deployment", "web", "lab-llm"))
    with pytest.raises(WaitFailed, match="Deployment lab-llm/web: deleted"):
        waiter.wait_for(k8s, "apps/v1", "Deployment", "web", "lab-llm", gone, 5)
    with pytest.raises(WaitTimeout, match="not ready after 1s; last seen: Deployment not created yet"):
        waiter.wait_for(k8s, "apps/v1", "Deployment", "web", "lab-llm", waiter.deployment_available, 1)


def test_k8s_apply_is_idempotent_and_keeps_secret_data_out_of_the_diff(kube_api: KubeApiStandIn) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": "keys", "namespace": "lab-llm"},
        "data": {"k": "c2VjcmV0LXZhbHVl"},
    }
    first = run_module(k8s_apply.main, {"manifests": [NAMESPACE, secret, deployment()]})
    assert not first.get("failed"), first
    assert [o["changed"] for o in first["objects"]] == [True, True, True]
    assert "c2VjcmV0LXZhbHVl" not in json.dumps(first)
    assert first["diff"]["after"]["Secret lab-llm/keys"]["data"] == {"k": "<redacted>"}
    second = run_module(k8s_apply.main, {"manifests": [NAMESPACE, secret, deployment()]})
    assert second["changed"] is False, second["objects"]


def test_k8s_apply_render_mode_writes_files_and_calls_nothing(kube_api: KubeApiStandIn, tmp_path: Path) -> None:
    tmp_path = tmp_path / "render"
    result = run_module(
        k8s_apply.main,
        {"manifests": [NAMESPACE, deployment()], "render_dir": str(tmp_path), "render_prefix": "stage9-"},
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "stage9-Deployment-lab-llm-web.yml",
        "stage9-Namespace-cluster-lab-llm.yml",
    ]
    assert json.loads((tmp_path / "stage9-Namespace-cluster-lab-llm.yml").read_text()) == NAMESPACE
    assert result["changed"] is False
    assert kube_api.requests == []


def test_k8s_apply_rejects_a_manifest_without_a_name(kube_api: KubeApiStandIn) -> None:
    result = run_module(k8s_apply.main, {"manifests": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {}}]})
    assert result["failed"] is True
    assert result["msg"] == "manifests[0] (Namespace) lacks metadata.name"
    assert kube_api.requests == []


def test_check_mode_on_a_fresh_cluster_predicts_instead_of_failing(kube_api: KubeApiStandIn) -> None:
    """Earlier tasks only pretend in check mode: the namespace (or an operator's CRD) may not exist yet."""
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "lab-llm"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    issuer = {"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "letsencrypt"}}
    result = run_module(k8s_apply.main, {"manifests": [NAMESPACE, pvc, issuer]}, check_mode=True)
    assert not result.get("failed"), result
    assert [o["changed"] for o in result["objects"]] == [True, True, True]
    # ansible-core 2.19 returns warnings as summaries with the message in event.msg.
    warnings = [w["event"]["msg"] if isinstance(w, dict) else w for w in result["warnings"]]
    assert warnings[0].startswith(
        "check mode: PersistentVolumeClaim lab-llm/data would be created; the server could not check it ("
    )
    assert "does not serve kind ClusterIssuer" in warnings[1]
    assert kube_api.names("v1", "Namespace") == []
    # Outside check mode the same missing namespace is an error.
    failed = run_module(k8s_apply.main, {"manifests": [pvc]})
    assert failed["msg"] == 'PersistentVolumeClaim lab-llm/data: not found (HTTP 404): namespaces "lab-llm" not found'


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


def test_waiter_survives_an_expired_resource_version(kube_api: KubeApiStandIn, k8s: service.K8sService) -> None:
    k8s.apply(NAMESPACE)
    k8s.apply(deployment())
    kube_api.compacted_rv = 10**6  # every watch from the object's resourceVersion answers 410 Gone
    later(
        0.8,
        lambda: kube_api.set_status(
            "apps/v1",
            "Deployment",
            "web",
            {"observedGeneration": 1, "availableReplicas": 1, "updatedReplicas": 1},
            "lab-llm",
        ),
    )
    obj = waiter.wait_for(k8s, "apps/v1", "Deployment", "web", "lab-llm", waiter.deployment_available, 5)
    assert obj["status"]["availableReplicas"] == 1
    watches = [path for method, path in kube_api.requests if "watch=" in path]
    assert 1 < len(watches) < 20  # it watched again after each 410, without spinning
