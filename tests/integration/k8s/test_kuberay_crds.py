"""lab.llm.kuberay_operator applies the pinned chart's CRDs itself, because Helm installs a chart's crds/ once and never
upgrades them: against the stand-in, CRDs an older chart created (with Helm's field manager) are brought to the
files' version and a second run changes nothing. (The stand-in's CRD rules, such as a stored version that may not be
dropped, are tested in tests/standins/k8s/test_admission.py.)

The CRD file is KubeRay's own (../shared/reference/crds, identical to the v1.7.0 tag's helm-chart crds/); the
Helm pull itself needs the `helm` binary and the chart repository, which the tests do not have."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.standins.k8s import fixtures
from tests.standins.k8s.fixtures import KUBERAY_CRDS, run_playbook
from tests.standins.k8s.server import KubeApiStandIn

pytestmark = pytest.mark.playbook
kube_api = fixtures.kube_api
CRD = "apiextensions.k8s.io/v1"


def run_crds_step(tmp_path: Path, crds_dir: Path) -> str:
    playbook = tmp_path / "crds.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "ansible.builtin.include_role": {
                                "name": "lab.llm.kuberay_operator",
                                "tasks_from": "crds",
                            },
                            "vars": {"kuberay_operator_crds_path": str(crds_dir)},
                        }
                    ],
                }
            ]
        )
    )
    result = run_playbook(
        str(playbook), "-i", "localhost,", "-e", "ansible_python_interpreter={{ ansible_playbook_python }}"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return next(line for line in result.stdout.splitlines() if line.startswith("localhost "))


@pytest.fixture
def chart_crds(shared_reference: Path, tmp_path: Path) -> tuple[Path, dict[str, dict[str, Any]]]:
    directory = tmp_path / "kuberay-operator" / "crds"
    directory.mkdir(parents=True)
    crds = {}
    # The RayService CRD only (each file is about 1 MB; one is enough to show the step), as the chart ships it.
    for name in KUBERAY_CRDS[:1]:
        shutil.copy(shared_reference / "crds" / name, directory / name)
        crd = yaml.load((directory / name).read_text(), Loader=yaml.CSafeLoader)
        crds[crd["metadata"]["name"]] = crd
    return directory, crds


def older(crd: dict[str, Any]) -> dict[str, Any]:
    """The same CRD as an older chart had it: without the RayService's `upgradeStrategy` field."""
    copied = copy.deepcopy(crd)
    for version in copied["spec"]["versions"]:
        version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"].pop("upgradeStrategy", None)
    return copied


def test_the_charts_crds_replace_older_ones_and_a_rerun_changes_nothing(
    kube_api: KubeApiStandIn, chart_crds: tuple[Path, dict[str, dict[str, Any]]], tmp_path: Path
) -> None:
    directory, crds = chart_crds
    kube_api.put(older(crds["rayservices.ray.io"]), manager="helm")
    stale = kube_api.get(CRD, "CustomResourceDefinition", "rayservices.ray.io")
    assert (
        "upgradeStrategy"
        not in stale["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    )

    recap = run_crds_step(tmp_path, directory)
    assert "changed=1" in recap, recap
    for name, crd in crds.items():
        stored = kube_api.get(CRD, "CustomResourceDefinition", name)
        assert stored["spec"] == crd["spec"], name
        assert stored["status"]["storedVersions"] == ["v1"]

    assert "changed=0" in run_crds_step(tmp_path, directory)
