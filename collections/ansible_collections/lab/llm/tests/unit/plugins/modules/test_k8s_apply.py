"""lab.llm.k8s_apply against the Kubernetes API stand-in: apply, idempotence, render mode, Secret data kept out of
diffs, check mode on a fresh cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.lab.llm.plugins.modules import k8s_apply
from tests.module_runner import run_module
from tests.standins.k8s import fixtures
from tests.standins.k8s.fixtures import NAMESPACE, deployment
from tests.standins.k8s.server import KubeApiStandIn

kube_api = fixtures.kube_api


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
    args = {"manifests": [NAMESPACE, deployment()], "render_dir": str(tmp_path), "render_prefix": "stage9-"}
    result = run_module(k8s_apply.main, args)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "stage9-Deployment-lab-llm-web.yml",
        "stage9-Namespace-cluster-lab-llm.yml",
    ]
    assert json.loads((tmp_path / "stage9-Namespace-cluster-lab-llm.yml").read_text()) == NAMESPACE
    assert result["changed"] is True
    assert [o["changed"] for o in result["objects"]] == [True, True]
    assert kube_api.requests == []
    again = run_module(k8s_apply.main, args)
    assert again["changed"] is False, again["diff"]
    assert again["files"] == result["files"]


SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "type": "Opaque",
    "metadata": {"name": "keys", "namespace": "lab-llm"},
    "data": {"k": "c2VjcmV0LXZhbHVl"},
}


def test_render_mode_in_check_mode_writes_nothing_and_says_what_would_change(
    kube_api: KubeApiStandIn, tmp_path: Path
) -> None:
    render = tmp_path / "render"
    args = {"manifests": [NAMESPACE, SECRET], "render_dir": str(render), "_ansible_diff": True}
    predicted = run_module(k8s_apply.main, args, check_mode=True)
    assert not predicted.get("failed"), predicted
    assert not render.exists()
    assert predicted["changed"] is True
    secret_file = str(render / "Secret-lab-llm-keys.yml")
    assert predicted["diff"]["before"][secret_file] is None
    assert predicted["diff"]["after"][secret_file]["data"] == {"k": "<redacted>"}
    assert "c2VjcmV0LXZhbHVl" not in json.dumps(predicted)

    run_module(k8s_apply.main, args)
    changed_namespace = {**NAMESPACE, "metadata": {**NAMESPACE["metadata"], "labels": {"tier": "llm"}}}
    before = {path.name: path.read_text() for path in render.iterdir()}
    predicted = run_module(k8s_apply.main, {**args, "manifests": [changed_namespace, SECRET]}, check_mode=True)
    assert predicted["changed"] is True
    assert [o["changed"] for o in predicted["objects"]] == [True, False]
    namespace_file = str(render / "Namespace-cluster-lab-llm.yml")
    assert predicted["diff"]["before"][namespace_file] == NAMESPACE
    assert predicted["diff"]["after"][namespace_file] == changed_namespace
    assert {path.name: path.read_text() for path in render.iterdir()} == before


def test_render_mode_writes_a_secret_0600_atomically_and_tightens_an_old_0644_file(
    kube_api: KubeApiStandIn, tmp_path: Path
) -> None:
    render = tmp_path / "render"
    render.mkdir()
    secret_file = render / "Secret-lab-llm-keys.yml"
    secret_file.write_text(json.dumps(SECRET, indent=2, sort_keys=True) + "\n")  # as the old code left it
    secret_file.chmod(0o644)
    result = run_module(k8s_apply.main, {"manifests": [NAMESPACE, SECRET], "render_dir": str(render)})
    assert result["changed"] is True
    assert [o["changed"] for o in result["objects"]] == [True, True]
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert (render / "Namespace-cluster-lab-llm.yml").stat().st_mode & 0o777 == 0o644
    assert sorted(path.name for path in render.iterdir()) == ["Namespace-cluster-lab-llm.yml", secret_file.name]
    (render / "Namespace-cluster-lab-llm.yml").unlink()
    fresh = run_module(k8s_apply.main, {"manifests": [SECRET], "render_dir": str(render / "new")})
    assert (render / "new" / secret_file.name).stat().st_mode & 0o777 == 0o600, fresh


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


def test_connection_settings_from_the_environment_are_used_and_the_token_is_masked(
    kube_api: KubeApiStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """K8S_AUTH_* as kubernetes.core reads them; the token from K8S_AUTH_API_KEY is a no_log value like the
    option's own, so it never shows in the result, even where a message would repeat it."""
    token = "sk-env-token-0123456789"
    monkeypatch.setenv("K8S_AUTH_API_KEY", token)
    monkeypatch.setenv("K8S_AUTH_CONTEXT", "no-such-context")
    result = run_module(k8s_apply.main, {"manifests": [NAMESPACE], "render_prefix": token})
    assert result.get("failed"), result
    assert "no-such-context" in result["msg"]  # the context came from the environment
    assert token not in json.dumps(result)
    assert result["invocation"]["module_args"]["api_key"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
