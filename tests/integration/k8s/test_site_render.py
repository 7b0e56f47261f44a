"""site.yml against inventory/reference-lab in check mode and render mode: every manifest Stages 4-7 would apply is
written out and validated (core kinds against the Kubernetes schema, CRs against their CRDs, unknown fields are
errors); the local demo inventory skips these stages cleanly.

Render mode (`lab_llm_k8s_render_dir`) contacts no cluster. Stages 1-2 talk to Proxmox, which is not here, so the run
starts at Stage 3 (`--start-at-task`) and is limited to the controller and the GPU VMs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab_llm.config import parse_config
from tests.policy import checkov_env
from tests.standins.k8s import admission, schemas
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


def render_site(out: Path, *extra_vars: str) -> None:
    """site.yml in check and render mode from Stage 3 on, its manifests written to `out`; `extra_vars` are
    `NAME=VALUE` overrides of the inventory."""
    overrides = [argument for value in extra_vars for argument in ("-e", value)]
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
        *overrides,
        *VAULT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("render")
    render_site(out)
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
        try:  # names and labels as the API server checks them on create
            admission.check(manifest["kind"], None, manifest)
        except admission.Rejected as rejected:
            problems[name] = rejected.causes
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


def pod_templates(rayservice: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cluster = rayservice["spec"]["rayClusterConfig"]
    templates = {"head": cluster["headGroupSpec"]["template"]}
    templates.update({group["groupName"]: group["template"] for group in cluster["workerGroupSpecs"]})
    return templates


def test_the_ray_pods_run_as_the_images_user_and_can_read_their_volumes(rendered: Path) -> None:
    """rayproject/ray runs as uid 1000, gid 100: that group owns the Secret files (0440) and the auth-store volume."""
    rayservice = manifests(rendered)["stage6-RayService-lab-llm-lab-llm.yml"]
    for name, template in pod_templates(rayservice).items():
        context = template["spec"]["securityContext"]
        assert context == {
            "runAsUser": 1000,
            "runAsGroup": 100,
            "runAsNonRoot": True,
            "fsGroup": 100,
            "fsGroupChangePolicy": "OnRootMismatch",  # no walk over a large volume on every start
            "seccompProfile": {"type": "RuntimeDefault"},
        }, name
        assert template["spec"]["automountServiceAccountToken"] is False, name
        for container in template["spec"]["containers"] + template["spec"].get("initContainers", []):
            # Pod Security Standards, Restricted: nothing to escalate to, no capabilities.
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            }, (name, container["name"])
        secrets = [v for v in template["spec"]["volumes"] if "secret" in v]
        assert secrets, name
        for volume in secrets:
            # Group-readable: with fsGroup the files belong to gid 100, the image user's group.
            assert volume["secret"].get("defaultMode", 0o644) & 0o040, (name, volume)


def test_the_ray_pods_pass_deckhouses_default_pod_policy(rendered: Path) -> None:
    """The lab-llm namespace carries no policy label, so Deckhouse applies its default (Baseline since 1.55)."""
    found = manifests(rendered)
    namespace = found["stage6-Namespace-cluster-lab-llm.yml"]
    assert admission.deckhouse_pod_policy(namespace) == "baseline"
    for name, template in pod_templates(found["stage6-RayService-lab-llm-lab-llm.yml"]).items():
        # Restricted (which includes Baseline): the Ray pods would pass a namespace labelled restricted too.
        assert admission.pod_security_problems(template["spec"], "restricted") == [], name
    openwebui = found["stage7-Deployment-openwebui-openwebui.yml"]["spec"]["template"]["spec"]
    assert admission.pod_security_problems(openwebui, "baseline") == []


def test_the_head_takes_no_work_and_every_worker_gets_a_serve_proxy(rendered: Path) -> None:
    rayservice = manifests(rendered)["stage6-RayService-lab-llm-lab-llm.yml"]
    cluster = rayservice["spec"]["rayClusterConfig"]
    # As KubeRay's LLM samples: the head advertises no CPUs, so no replica or engine worker is placed there.
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    workers = sum(group["replicas"] for group in cluster["workerGroupSpecs"])
    application = json.loads(rayservice["spec"]["serveConfigV2"])["applications"][0]
    # One placeholder replica per worker pod (at most one per node, with a CPU share the head does not have): Ray
    # Serve then runs its proxy (HAProxy) on every worker, so the readiness probe (the gate's /readyz through that
    # proxy) passes on the worker that only holds a later pipeline stage too (Ray docs, "RayService worker Pods
    # aren't ready").
    assert parse_config(application["args"]).serving.proxy_replicas == workers


def test_openwebui_takes_its_settings_from_the_env_and_accepts_uploads(rendered: Path) -> None:
    found = manifests(rendered)
    container = found["stage7-Deployment-openwebui-openwebui.yml"]["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["ENABLE_PERSISTENT_CONFIG"] == "false"  # a rotated key in the Secret wins over the stored one
    upload_mb = int(env["RAG_FILE_MAX_SIZE"])
    assert upload_mb >= 50
    ingress = found["stage7-Ingress-openwebui-openwebui.yml"]
    body = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert body.endswith("m")
    assert int(body[:-1]) > upload_mb  # ingress-nginx's default of 1m would refuse every document


def test_values_yaml_would_misread_reach_the_manifests_as_written(tmp_path: Path) -> None:
    """Wildcard hosts (`*.lab.example`, which YAML would read as an alias) and words YAML 1.1 reads as booleans
    (a storage class named `on`) reach the Ingresses and the claim as the strings the inventory gave."""
    render_site(
        tmp_path,
        "rayservice_ingress_host=*.llm.lab.example",
        "openwebui_ingress_host=*.chat.lab.example",
        "openwebui_storage_class=on",
    )
    found = manifests(tmp_path)
    ingresses = {name: body for name, body in found.items() if body["kind"] == "Ingress"}
    hosts = {body["metadata"]["name"]: body["spec"]["rules"][0]["host"] for body in ingresses.values()}
    assert sorted(hosts.values()) == ["*.chat.lab.example", "*.llm.lab.example"], hosts
    for body in ingresses.values():
        assert body["spec"]["tls"][0]["hosts"] == [body["spec"]["rules"][0]["host"]]
    claims = [body for body in found.values() if body["kind"] == "PersistentVolumeClaim" and "openwebui" in str(body)]
    assert [claim["spec"]["storageClassName"] for claim in claims] == ["on"]


def test_a_manifest_policy_checker_finds_nothing_lab_llm_has_not_decided(rendered: Path, tmp_path: Path) -> None:
    """Checkov's Kubernetes checks over every rendered manifest, and over the Pods KubeRay makes from the RayService's
    templates (Checkov does not read inside custom resources); tests/policy/checkov.yaml skips, with reasons, the
    rules lab-llm does not follow."""
    venv = checkov_env.ensure_venv()
    scanned = tmp_path / "manifests"
    scanned.mkdir()
    for path in rendered.glob("*.yml"):
        shutil.copy(path, scanned / path.name)
    rayservice = manifests(rendered)["stage6-RayService-lab-llm-lab-llm.yml"]
    for group, template in pod_templates(rayservice).items():
        annotations = dict(template["metadata"].get("annotations") or {})
        # KubeRay adds the probes a Ray container lacks (ray-operator/controllers/ray/common/pod.go,
        # initLivenessAndReadinessProbe): liveness everywhere, readiness on the head (the workers carry their own).
        annotations["checkov.io/skip1"] = "CKV_K8S_8=KubeRay injects the liveness probe"
        if "readinessProbe" not in template["spec"]["containers"][0]:
            annotations["checkov.io/skip2"] = "CKV_K8S_9=KubeRay injects the readiness probe"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"lab-llm-{group}", "namespace": "lab-llm", "annotations": annotations},
            "spec": template["spec"],
        }
        (scanned / f"kuberay-pod-{group}.yml").write_text(json.dumps(pod, indent=2))
    report = checkov_env.scan(scanned, venv)
    failed = sorted({(check["check_id"], check["resource"]) for check in report["results"]["failed_checks"]})
    assert failed == []
    assert report["summary"]["parsing_errors"] == 0
    resources = {check["resource"] for check in report["results"]["passed_checks"]}
    assert {"Deployment.openwebui.openwebui", "Pod.lab-llm.lab-llm-head", "Pod.lab-llm.lab-llm-rtx-3090"} <= resources


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


def render_gpu_operator(tmp_path: Path, *extra: str) -> dict[str, dict[str, Any]]:
    result = run_playbook(
        "playbooks/k8s_operators.yml",
        "-i",
        "inventory/reference-lab",
        "--check",
        "-e",
        "lab_llm_gpu_management=gpu_operator",
        "-e",
        f"lab_llm_k8s_render_dir={tmp_path}",
        *extra,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    found = manifests(tmp_path)
    found["values"] = yaml.safe_load((tmp_path / "stage5-gpu-operator-values.helm.yaml").read_text())
    return found


# The shape of the GPU Operator's own pods (toolkit, device plugin, validator): privileged, host paths.
OPERATOR_POD = {
    "containers": [
        {"name": "toolkit", "image": "nvcr.io/nvidia/k8s/container-toolkit", "securityContext": {"privileged": True}}
    ],
    "volumes": [{"name": "host-root", "hostPath": {"path": "/"}}],
}


def test_the_gpu_operator_path_on_deckhouse(tmp_path: Path, shared_reference: Path) -> None:
    """Clusters without Deckhouse's GPU support (lab_llm_gpu_management: gpu_operator) get the GPU Operator chart,
    a namespace Deckhouse's admission lets run the operator's privileged pods, and containerd's nvidia runtime the
    way Deckhouse documents it: a NodeGroupConfiguration before bashible's containerd step, the operator's toolkit
    off."""
    found = render_gpu_operator(tmp_path)
    namespace = found["stage5-gpu-operator-Namespace-cluster-gpu-operator.yml"]
    assert schemas.problems(schemas.core_validator("v1", "Namespace"), namespace) == []
    assert namespace["metadata"]["labels"] == {
        "pod-security.kubernetes.io/enforce": "privileged",  # upstream Pod Security admission
        "security.deckhouse.io/pod-policy": "privileged",  # Deckhouse's admission-policy-engine reads only this
    }
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "toolkit", "namespace": "gpu-operator"}}
    admission.check("Pod", None, dict(pod, spec=OPERATOR_POD), namespace)
    upstream_only = {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}}
    with pytest.raises(admission.Rejected) as refused:
        admission.check("Pod", None, dict(pod, spec=OPERATOR_POD), upstream_only)
    assert refused.value.code == 403

    values = found["values"]
    assert values["driver"] == {"enabled": False}  # the driver is in the VM image
    assert values["toolkit"] == {"enabled": False}  # bashible would undo its edits of config.toml
    assert values["mig"] == {"strategy": "none"}  # GeForce cards have no MIG
    configuration = found["stage5-gpu-operator-NodeGroupConfiguration-cluster-lab-llm-nvidia-containerd.sh.yml"]
    validator = validators(shared_reference)[("deckhouse.io/v1alpha1", "NodeGroupConfiguration")]
    assert schemas.problems(validator, configuration) == []
    spec = configuration["spec"]
    assert spec["weight"] < 32  # before 032_configure_containerd, which merges conf.d/*.toml and restarts containerd
    # The NodeGroups Stage 4 makes, one per GPU class of the inventory (and no others: elsewhere the runtime is absent).
    assert spec["nodeGroups"] == ["gpu-rtx-3060", "gpu-rtx-3090"]
    assert "/etc/containerd/conf.d/" in spec["content"]
    assert 'default_runtime_name = "nvidia"' in spec["content"]
    assert "/usr/bin/nvidia-container-runtime" in spec["content"]


def test_the_gpu_operator_path_elsewhere_lets_the_toolkit_edit_containerds_config(tmp_path: Path) -> None:
    found = render_gpu_operator(tmp_path, "-e", "gpu_operator_containerd_setup=operator_toolkit")
    env = {item["name"]: item["value"] for item in found["values"]["toolkit"]["env"]}
    assert found["values"]["toolkit"]["enabled"] is True
    assert env["CONTAINERD_CONFIG"] == "/etc/containerd/config.toml"  # the toolkit edits the main file
    assert env["CONTAINERD_RUNTIME_CLASS"] == "nvidia"
    assert not [name for name in found if "NodeGroupConfiguration" in name]
