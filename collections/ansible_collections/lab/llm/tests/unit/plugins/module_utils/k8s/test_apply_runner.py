"""module_utils/k8s/apply_runner.py against the Kubernetes API stand-in and a temporary render directory: every
manifest checked before the first write, check mode writes nothing, a second run changes nothing, and a failure
reports what was done before it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.lab.llm.plugins.module_utils.k8s.apply_runner import (
    ApplyError,
    ApplyRunner,
    secret_values,
)
from tests.standins.k8s.fixtures import NAMESPACE, deployment
from tests.standins.k8s.server import KubeApiStandIn

SECRET: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Secret",
    "type": "Opaque",
    "metadata": {"name": "keys", "namespace": "lab-llm"},
    "data": {"k": "c2VjcmV0LXZhbHVl"},
    "stringData": {"plain": "hunter2", "empty": ""},
}
NAMELESS: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "lab-llm"}}


def run(manifests: list[dict[str, Any]], check_mode: bool = False, **params: Any) -> dict[str, Any]:
    options = {"manifests": manifests, "state": "present", "render_dir": None, "render_prefix": "", **params}
    return ApplyRunner(options, check_mode, shutil.move).run()


def writes(kube_api: KubeApiStandIn) -> list[tuple[str, str]]:
    return [(method, path) for method, path in kube_api.requests if method != "GET"]


def test_one_malformed_manifest_fails_before_anything_is_applied_or_written(
    kube_api: KubeApiStandIn, tmp_path: Path
) -> None:
    with pytest.raises(ApplyError) as error:
        run([NAMESPACE, NAMELESS, {"metadata": {"name": "x"}}])
    assert str(error.value) == ("manifests[1] (ConfigMap) lacks metadata.name; manifests[2] (?) lacks apiVersion, kind")
    assert error.value.result == {}
    assert kube_api.requests == []
    with pytest.raises(ApplyError):
        run([NAMESPACE, NAMELESS], render_dir=str(tmp_path / "render"))
    assert not (tmp_path / "render").exists()


def test_check_mode_applies_nothing_and_a_second_run_changes_nothing(kube_api: KubeApiStandIn) -> None:
    predicted = run([NAMESPACE, deployment()], check_mode=True)
    assert [item["changed"] for item in predicted["objects"]] == [True, True]
    assert kube_api.names("v1", "Namespace") == []
    assert all("dryRun=All" in path for _method, path in writes(kube_api))

    first = run([NAMESPACE, SECRET, deployment()])
    assert first["changed"] is True
    assert first["diff"]["after"]["Secret lab-llm/keys"]["data"] == {"k": "<redacted>"}
    again = run([NAMESPACE, SECRET, deployment()])
    assert again == {
        "changed": False,
        "objects": [
            {"object": "Namespace lab-llm", "changed": False},
            {"object": "Secret lab-llm/keys", "changed": False},
            {"object": "Deployment lab-llm/web", "changed": False},
        ],
        "diff": {"before": {}, "after": {}},
    }


def test_state_absent_deletes_once(kube_api: KubeApiStandIn) -> None:
    run([NAMESPACE, deployment()])
    gone = run([deployment()], state="absent")
    assert gone["objects"] == [{"object": "Deployment lab-llm/web", "changed": True}]
    assert kube_api.get("apps/v1", "Deployment", "web", "lab-llm") is None
    assert run([deployment()], state="absent")["changed"] is False


def test_a_refused_manifest_reports_the_objects_applied_before_it(kube_api: KubeApiStandIn) -> None:
    bad = deployment()
    bad["spec"]["replicas"] = "three"
    with pytest.raises(ApplyError) as error:
        run([NAMESPACE, bad])
    assert str(error.value).startswith("Deployment lab-llm/web: spec.replicas: rejected as invalid (HTTP 422)")
    assert error.value.result == {"objects": [{"object": "Namespace lab-llm", "changed": True}]}


def test_render_in_check_mode_writes_nothing_then_writes_once(kube_api: KubeApiStandIn, tmp_path: Path) -> None:
    render = tmp_path / "render"
    predicted = run([NAMESPACE, SECRET], check_mode=True, render_dir=str(render), render_prefix="s1-")
    assert predicted["changed"] is True
    assert not render.exists()
    written = run([NAMESPACE, SECRET], render_dir=str(render), render_prefix="s1-")
    assert (
        written["files"]
        == predicted["files"]
        == [
            str(render / "s1-Namespace-cluster-lab-llm.yml"),
            str(render / "s1-Secret-lab-llm-keys.yml"),
        ]
    )
    assert json.loads((render / "s1-Secret-lab-llm-keys.yml").read_text()) == SECRET
    assert os.stat(render / "s1-Secret-lab-llm-keys.yml").st_mode & 0o777 == 0o600
    again = run([NAMESPACE, SECRET], render_dir=str(render), render_prefix="s1-")
    assert again["changed"] is False
    assert again["diff"] == {"before": {}, "after": {}}
    assert kube_api.requests == []


def test_a_file_that_cannot_be_written_reports_the_files_written_before(tmp_path: Path) -> None:
    render = tmp_path / "render"

    def move(source: str, destination: str) -> None:
        if destination.endswith("Secret-lab-llm-keys.yml"):
            raise OSError(28, "No space left on device")
        shutil.move(source, destination)

    options = {"manifests": [NAMESPACE, SECRET], "state": "present", "render_dir": str(render), "render_prefix": ""}
    with pytest.raises(ApplyError) as error:
        ApplyRunner(options, False, move).run()
    assert str(error.value) == "cannot write %s: [Errno 28] No space left on device" % (
        render / "Secret-lab-llm-keys.yml"
    )
    assert error.value.result["files"] == [str(render / "Namespace-cluster-lab-llm.yml")]
    assert [item["object"] for item in error.value.result["objects"]] == ["Namespace lab-llm"]


def test_a_path_that_is_not_a_readable_file_is_named_not_a_traceback(tmp_path: Path) -> None:
    render = tmp_path / "render"
    (render / "Secret-lab-llm-keys.yml").mkdir(parents=True)
    (render / "Namespace-cluster-lab-llm.yml").write_bytes(b"\xff\xfe not UTF-8")
    with pytest.raises(ApplyError) as error:
        run([NAMESPACE, SECRET], render_dir=str(render))
    assert str(error.value).startswith("cannot read %s: " % (render / "Namespace-cluster-lab-llm.yml"))
    assert error.value.result == {"files": [], "objects": []}
    with pytest.raises(ApplyError, match=r"^cannot read .*Secret-lab-llm-keys\.yml: \[Errno 21\] Is a directory"):
        run([SECRET], render_dir=str(render))
    assert (render / "Namespace-cluster-lab-llm.yml").read_bytes() == b"\xff\xfe not UTF-8"


def test_secret_values_are_the_secrets_data_and_string_data_only() -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "visible"}}
    assert secret_values([SECRET, config_map]) == {"c2VjcmV0LXZhbHVl", "hunter2"}
