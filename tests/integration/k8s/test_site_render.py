"""site.yml against inventory/reference-lab in check mode and render mode: every manifest Stages 4-7 would apply is
written out and validated (core kinds against the Kubernetes schema, CRs against their CRDs, unknown fields are
errors); the local demo inventory skips these stages cleanly.

Render mode (`lab_llm_k8s_render_dir`) contacts no cluster. Stages 1-2 talk to Proxmox, which is not here, so the run
starts at Stage 3 (`--start-at-task`) and is limited to the controller and the GPU VMs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab_llm.config import parse_config
from tests.standins.k8s import schemas
from tests.standins.k8s.fixtures import CRD_DIR, KUBERAY_CRDS, run_playbook

pytestmark = pytest.mark.playbook
VAULT = [
    "-e",
    "vault_deckhouse_node_ssh_private_key=test-only",
    "-e",
    "vault_lab_llm_admin_password=test-only",
    "-e",
    "vault_openwebui_secret_key=test-only",
]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("render")
    result = run_playbook(
        "playbooks/site.yml",
        "-i",
        "inventory/reference-lab",
        "--check",
        "--limit",
        "localhost,gpu_nodes",
        "--start-at-task",
        "Collect the GPUs Stages 1-2 found, per GPU VM",  # the first task of Stage 3 (fit_plan.yml)
        "-e",
        f"lab_llm_k8s_render_dir={out}",
        *VAULT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return out


def validators(shared_reference: Path) -> dict[tuple[str, str], Any]:
    found = {}
    for path in [*sorted(CRD_DIR.glob("*.yaml")), *(shared_reference / "crds" / name for name in KUBERAY_CRDS)]:
        for spec, version, validator in schemas.served_versions(path):
            found[("{}/{}".format(spec["group"], version["name"]), spec["names"]["kind"])] = validator
    return found


def manifests(directory: Path) -> dict[str, dict[str, Any]]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(directory.glob("*.yml"))}


def test_every_rendered_manifest_is_valid(rendered: Path, shared_reference: Path) -> None:
    crds = validators(shared_reference)
    found = manifests(rendered)
    problems = {}
    for name, manifest in found.items():
        key = (manifest["apiVersion"], manifest["kind"])
        validator = crds.get(key) or schemas.core_validator(*key)
        if errors := schemas.problems(validator, manifest):
            problems[name] = errors
    assert problems == {}
    kinds = sorted({(m["kind"], m["metadata"]["name"]) for m in found.values()})
    assert kinds == [
        ("Deployment", "openwebui"),
        ("Ingress", "lab-llm"),
        ("Ingress", "openwebui"),
        ("Namespace", "kuberay-system"),
        ("Namespace", "lab-llm"),
        ("Namespace", "openwebui"),
        ("NodeGroup", "gpu-rtx-3060"),
        ("NodeGroup", "gpu-rtx-3090"),
        ("PersistentVolumeClaim", "lab-llm-auth"),
        ("PersistentVolumeClaim", "openwebui-data"),
        ("RayService", "lab-llm"),
        ("SSHCredentials", "gpu-3060-1-ssh"),
        ("SSHCredentials", "gpu-3090-1-ssh"),
        ("SSHCredentials", "gpu-3090-2-ssh"),
        ("SSHCredentials", "gpu-3090-3-ssh"),
        ("Secret", "lab-llm-auth-seed"),
        ("Secret", "lab-llm-signing-keys"),
        ("Service", "openwebui"),
        ("StaticInstance", "gpu-3060-1"),
        ("StaticInstance", "gpu-3090-1"),
        ("StaticInstance", "gpu-3090-2"),
        ("StaticInstance", "gpu-3090-3"),
    ]


def test_the_reference_lab_gets_deckhouse_gpu_nodes_and_the_fit_plan(rendered: Path) -> None:
    found = manifests(rendered)
    group = found["stage4-gpu-3090-1-NodeGroup-cluster-gpu-rtx-3090.yml"]
    assert group["spec"]["gpu"] == {"sharing": "Exclusive"}  # lab_llm_gpu_management: deckhouse
    assert group["spec"]["nodeTemplate"]["labels"]["lab-llm.io/gpu-class"] == "rtx-3090"
    instance = found["stage4-gpu-3090-1-StaticInstance-cluster-gpu-3090-1.yml"]
    assert instance["spec"]["address"] == "192.0.2.31"
    credentials = found["stage4-gpu-3090-1-SSHCredentials-cluster-gpu-3090-1-ssh.yml"]
    assert credentials["spec"]["privateSSHKey"] == "<redacted>"
    for name, manifest in found.items():
        if manifest["kind"] == "Secret":
            assert "data" not in manifest, name  # rendered Secrets never carry the files

    rayservice = found["stage6-RayService-lab-llm-lab-llm.yml"]
    application = json.loads(rayservice["spec"]["serveConfigV2"])["applications"][0]
    config = parse_config(application["args"], source=application["name"])
    # Stage 3's plan for the reference model (Dolphin 3.0 R1 24B AWQ, 32k context, 4 users): two pipeline stages.
    assert (config.engine.tensor_parallel_size, config.engine.pipeline_parallel_size) == (1, 2)
    assert config.engine.model == "/models/Dolphin3.0-R1-Mistral-24B-AWQ"  # the cluster's path, not the hub id
    groups = rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    gpus = sum(g["replicas"] * int(g["rayStartParams"]["num-gpus"]) for g in groups)
    assert gpus >= config.engine.world_size


def test_the_local_demo_inventory_skips_the_kubernetes_stages(tmp_path: Path) -> None:
    result = run_playbook(
        "playbooks/k8s_nodes.yml",
        "playbooks/k8s_operators.yml",
        "playbooks/rayservice.yml",
        "playbooks/openwebui.yml",
        "-i",
        "inventory/local",
        "--check",
        "-e",
        f"lab_llm_k8s_render_dir={tmp_path}",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "changed=0" in result.stdout
    assert "failed=0" in result.stdout
    assert "skipping: [localhost]" in result.stdout
    assert list(tmp_path.iterdir()) == []  # nothing rendered, nothing applied


def test_the_gpu_operator_path_renders_values_for_deckhouses_containerd(tmp_path: Path) -> None:
    """Clusters without Deckhouse's GPU support (lab_llm_gpu_management: gpu_operator) get the GPU Operator chart."""
    result = run_playbook(
        "playbooks/k8s_operators.yml",
        "-i",
        "inventory/reference-lab",
        "--check",
        "-e",
        "lab_llm_gpu_management=gpu_operator",
        "-e",
        f"lab_llm_k8s_render_dir={tmp_path}",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    namespace = yaml.safe_load((tmp_path / "stage5-gpu-operator-Namespace-cluster-gpu-operator.yml").read_text())
    assert schemas.problems(schemas.core_validator("v1", "Namespace"), namespace) == []
    values = yaml.safe_load((tmp_path / "stage5-gpu-operator-values.helm.yaml").read_text())
    assert values["driver"] == {"enabled": False}  # the driver is in the VM image
    env = {item["name"]: item["value"] for item in values["toolkit"]["env"]}
    assert env == {
        "CONTAINERD_CONFIG": "/etc/containerd/conf.d/nvidia-toolkit.toml",  # bashible owns config.toml
        "CONTAINERD_SOCKET": "/run/containerd/containerd.sock",
        "CONTAINERD_RUNTIME_CLASS": "nvidia",
        "CONTAINERD_SET_AS_DEFAULT": "true",
    }
    assert values["mig"] == {"strategy": "none"}  # GeForce cards have no MIG
