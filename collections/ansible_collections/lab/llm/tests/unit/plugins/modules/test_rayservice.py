"""lab.llm.rayservice: the rendered RayService is valid for the KubeRay CRD and lab_llm's AppConfig; applied to the
stand-in, the module waits for RUNNING, reports failures and timeouts, and treats engine changes as upgrades."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ansible_collections.lab.llm.plugins.modules import rayservice
from lab_llm.config import parse_config
from lab_llm.serve_env import ONE_HOP_ENV
from tests.module_runner import run_module
from tests.standins.k8s import fixtures, schemas
from tests.standins.k8s.controllers import play_kuberay
from tests.standins.k8s.server import KubeApiStandIn

kube_api = fixtures.kube_api

RAY = "ray.io/v1"


def args(**extra: Any) -> dict[str, Any]:
    base = dict(
        namespace="lab-llm",
        image="registry.example.org/lab-llm/serve:0.1.0",
        engine={
            "model": "/models/Qwen2.5-32B-Instruct-AWQ",
            "served_model_name": "qwen2.5-32b",
            "tensor_parallel_size": 2,
            "pipeline_parallel_size": 2,
            "quantization": "awq_marlin",
            "max_model_len": 8192,
        },
        worker_groups=[
            {"gpu_class": "rtx-3090", "replicas": 3, "node_group": "gpu-rtx-3090"},
            {"gpu_class": "rtx-3060", "replicas": 1, "node_group": "gpu-rtx-3060"},
        ],
        model_volume={"claim_name": "models-cephfs", "mount_path": "/models"},
        auth_store={"claim_name": "lab-llm-auth"},
        signing_keys={"secret_name": "lab-llm-signing-keys"},
        nccl_socket_ifname="eth0",
        wait_timeout=10,
    )
    return {**base, **extra}


def rendered(**extra: Any) -> dict[str, Any]:
    result = run_module(rayservice.main, args(render_only=True, **extra))
    assert not result.get("failed"), result
    return result["manifest"]


def rayservice_schema_problems(shared_reference: Any, manifest: dict[str, Any]) -> list[tuple[str, str]]:
    for _spec, version, validator in schemas.served_versions(shared_reference / "crds" / "ray.io_rayservices.yaml"):
        if version["name"] == "v1":
            return schemas.problems(validator, manifest)
    raise AssertionError("no v1 in the RayService CRD")


def test_render_is_valid_for_the_kuberay_crd_and_the_app_config(shared_reference: Any) -> None:
    manifest = rendered()
    assert rayservice_schema_problems(shared_reference, manifest) == []
    serve = json.loads(manifest["spec"]["serveConfigV2"])
    (application,) = serve["applications"]
    assert application["import_path"] == "lab_llm.app:build_app"
    config = parse_config(application["args"], source="serveConfigV2")
    assert config.engine.world_size == 4
    assert str(config.auth.store_path) == "/var/lib/lab-llm/auth/store.yaml"
    assert str(config.auth.signing_keys_path) == "/etc/lab-llm/signing/signing-keys.yaml"
    assert config.serving.accelerator == "gpu"

    cluster = manifest["spec"]["rayClusterConfig"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-gpus"] == "0"
    head_container = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head_container["resources"]["limits"]
    groups = {group["groupName"]: group for group in cluster["workerGroupSpecs"]}
    assert sorted(groups) == ["rtx-3060", "rtx-3090"]
    g3090 = groups["rtx-3090"]
    assert (g3090["replicas"], g3090["minReplicas"], g3090["maxReplicas"]) == (3, 3, 3)
    pod = g3090["template"]["spec"]
    assert pod["nodeSelector"] == {"lab-llm.io/gpu-class": "rtx-3090", "node.deckhouse.io/group": "gpu-rtx-3090"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["NCCL_SOCKET_IFNAME"] == "eth0"
    assert env["NCCL_IB_DISABLE"] == "1"
    # One hop: Ray starts with HAProxy in front of the engine's replica, on the head and on every worker.
    head_env = {item["name"]: item["value"] for item in head_container["env"]}
    for one_hop in (env, head_env):
        assert {name: one_hop.get(name) for name in ONE_HOP_ENV} == ONE_HOP_ENV
    assert manifest["spec"]["serveService"]["spec"]["ports"] == [{"name": "serve", "port": 8000, "targetPort": 8000}]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}} in pod["volumes"]
    assert g3090["template"]["metadata"]["labels"]["prometheus.deckhouse.io/custom-target"] == "lab-llm"
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


def test_traffic_goes_only_to_pods_whose_engine_is_ready(shared_reference: Any) -> None:
    manifest = rendered()
    assert rayservice_schema_problems(shared_reference, manifest) == []
    spec = manifest["spec"]
    serve_port = spec["serveService"]["spec"]["ports"][0]["targetPort"]
    # Workers: Ready only while the gate's readiness route answers 200 through the pod's own Serve proxy. A probe of
    # our own replaces KubeRay's default one (raylet + proxy `-/healthz`), which stays Ready while the engine is dead.
    for group in spec["rayClusterConfig"]["workerGroupSpecs"]:
        (container,) = group["template"]["spec"]["containers"]
        probe = container["readinessProbe"]
        assert probe["httpGet"] == {"path": "/readyz", "port": serve_port}, group["groupName"]
        # The gate waits up to 5 s for the engine's health check before it answers 503.
        assert probe["timeoutSeconds"] > 5
        assert "livenessProbe" not in container  # KubeRay's raylet liveness check stays
    # The head: KubeRay would route to it by the proxy's health alone; it has no ingress replica, so it takes none.
    assert spec["excludeHeadPodFromServeSvc"] is True
    head = spec["rayClusterConfig"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"


def test_a_fit_plan_overrides_engine_settings_and_worker_groups(shared_reference: Any) -> None:
    plan = {
        "engine_config": {
            "tensor_parallel_size": 1,
            "pipeline_parallel_size": 4,
            "env": {"VLLM_PP_LAYER_PARTITION": "20,20,20,4"},
        },
        "worker_groups": [
            {"gpu_class": "rtx-3090", "replicas": 3, "gpus_per_worker": 1},
            {"gpu_class": "rtx-3060", "replicas": 1, "gpus_per_worker": 1},
        ],
        "estimate": {"ignored": True},
    }
    manifest = rendered(fit_plan=plan, worker_groups=[])
    assert rayservice_schema_problems(shared_reference, manifest) == []
    config = parse_config(json.loads(manifest["spec"]["serveConfigV2"])["applications"][0]["args"])
    assert (config.engine.tensor_parallel_size, config.engine.pipeline_parallel_size) == (1, 4)
    assert config.engine.quantization == "awq_marlin"  # kept from the hand-given engine settings
    groups = manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert [g["template"]["spec"]["nodeSelector"] for g in groups] == [
        {"lab-llm.io/gpu-class": "rtx-3090"},
        {"lab-llm.io/gpu-class": "rtx-3060"},
    ]
    # Each worker advertises its GPU class, which the planner's placement bundles ask for.
    assert [g["rayStartParams"]["resources"] for g in groups] == ["'{\"rtx-3090\": 1}'", "'{\"rtx-3060\": 1}'"]


def test_a_writable_auth_store_is_seeded_once_from_a_secret(shared_reference: Any) -> None:
    manifest = rendered(auth_store={"claim_name": "lab-llm-auth", "seed_secret_name": "lab-llm-auth-seed"})
    assert rayservice_schema_problems(shared_reference, manifest) == []
    head = manifest["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    (init,) = head["initContainers"]
    assert init["command"][-1] == (
        "[ -s /var/lib/lab-llm/auth/store.yaml ] || cp /seed/store.yaml /var/lib/lab-llm/auth/store.yaml"
    )
    assert {"name": "auth-seed", "secret": {"secretName": "lab-llm-auth-seed"}} in head["volumes"]


def test_too_few_gpus_fail_before_any_api_call(kube_api: KubeApiStandIn) -> None:
    result = run_module(
        rayservice.main, args(engine={"model": "/models/m", "tensor_parallel_size": 4, "pipeline_parallel_size": 2})
    )
    assert result["failed"] is True
    assert result["msg"] == (
        "RayService lab-llm/lab-llm: engine tensor_parallel_size x pipeline_parallel_size = 8 "
        "per replica x 1 replica(s) needs 8 GPUs, but worker_groups provide 4"
    )
    assert kube_api.requests == []


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"auth_store": {"claim_name": "a", "secret_name": "b"}}, "mutually exclusive: claim_name|secret_name"),
        ({"auth_store": {"file": "users.yaml"}}, "one of the following is required: claim_name, secret_name"),
        ({"auth_store": {"secret_name": "a", "seed_secret_name": "b"}}, "missing parameter(s) required by"),
        ({"signing_keys": {"file": "keys.yaml"}}, "missing required arguments: secret_name found in signing_keys"),
        ({"image": ""}, "image is empty"),
        ({"gpu_taint": {"effect": "Always"}}, "value of effect must be one of: NoSchedule, PreferNoSchedule"),
        ({"engine": {"model": "/m", "tensor_parallel_size": "two"}}, "engine.tensor_parallel_size='two'"),
        ({"auth": {"store_path": "/x"}}, "auth.store_path is set by this module"),
        # lab-llm's config forbids unknown fields, but only when the app starts in the cluster: refused here first.
        (
            {"engine": {"model": "/m", "tensor_paralel_size": 2}},
            "engine.tensor_paralel_size is not a field of lab-llm's engine config (did you mean 'tensor_parallel_size'",
        ),
        ({"serving": {"num_replica": 2}}, "serving.num_replica is not a field of lab-llm's serving config (did you"),
        ({"auth": {"issuer": "x", "token_ttl": 60}}, "auth.token_ttl is not a field of lab-llm's auth config"),
        (
            {"fit_plan": {"engine_config": {"model": "/m", "max_model_length": 4096}}},
            "fit_plan.engine_config.max_model_length is not a field of lab-llm's engine config",
        ),
    ],
)
def test_bad_input_is_named(kube_api: KubeApiStandIn, bad: dict[str, Any], message: str) -> None:
    result = run_module(rayservice.main, args(**bad))
    assert result["failed"] is True
    assert message in result["msg"]
    assert kube_api.requests == []


@pytest.mark.parametrize("option", ["image", "auth_store", "signing_keys"])
def test_what_state_present_needs_is_required(kube_api: KubeApiStandIn, option: str) -> None:
    given = args()
    del given[option]
    result = run_module(rayservice.main, given)
    assert result["failed"] is True
    assert result["msg"] == f"state is present but all of the following are missing: {option}"
    assert kube_api.requests == []


def with_namespace(api: KubeApiStandIn) -> None:
    api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab-llm"}})


def test_applies_waits_for_running_and_is_idempotent(kube_api: KubeApiStandIn) -> None:
    with_namespace(kube_api)
    play_kuberay(kube_api)
    result = run_module(rayservice.main, args())
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert (result["application_status"], result["ray_cluster"]) == ("RUNNING", "lab-llm-raycluster-g1")
    assert result["serve_service"] == "lab-llm-serve-svc"
    stored = kube_api.get(RAY, "RayService", "lab-llm", "lab-llm")
    assert stored["spec"]["serveConfigV2"] == result["manifest"]["spec"]["serveConfigV2"]
    again = run_module(rayservice.main, args())
    assert again["changed"] is False, again.get("diff")


def test_an_engine_change_is_an_upgrade_the_module_waits_through(kube_api: KubeApiStandIn) -> None:
    with_namespace(kube_api)
    play_kuberay(kube_api)
    assert not run_module(rayservice.main, args()).get("failed")
    engine = dict(args()["engine"], max_model_len=16384)
    result = run_module(rayservice.main, args(engine=engine))
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert '"max_model_len": 16384' in result["diff"]["after"]["spec"]["serveConfigV2"]
    assert '"max_model_len": 8192' in result["diff"]["before"]["spec"]["serveConfigV2"]
    # It returned only once the new cluster served and no upgrade was pending.
    assert result["ray_cluster"] == "lab-llm-raycluster-g2"


def test_new_cluster_engine_upgrades_change_the_cluster_and_in_place_ones_do_not() -> None:
    changed_engine = dict(args()["engine"], max_model_len=16384)
    in_place = [rendered(), rendered(engine=changed_engine)]
    assert in_place[0]["spec"]["rayClusterConfig"] == in_place[1]["spec"]["rayClusterConfig"]
    new_cluster = [
        rendered(engine_change_upgrade="new_cluster"),
        rendered(engine_change_upgrade="new_cluster", engine=changed_engine),
    ]
    clusters = [r["spec"]["rayClusterConfig"] for r in new_cluster]
    assert clusters[0] != clusters[1]  # KubeRay sees a cluster change: zero-downtime upgrade to a new RayCluster
    digests = {c["headGroupSpec"]["template"]["metadata"]["annotations"]["lab-llm.io/engine-config"] for c in clusters}
    assert len(digests) == 2


def test_a_failed_deployment_is_reported_with_rays_message(kube_api: KubeApiStandIn) -> None:
    with_namespace(kube_api)
    play_kuberay(kube_api, outcome="DEPLOY_FAILED", message="CUDA out of memory")
    result = run_module(rayservice.main, args())
    assert result["failed"] is True
    assert result["msg"] == (
        "RayService lab-llm/lab-llm: application llm DEPLOY_FAILED on RayCluster "
        "lab-llm-raycluster-g1: CUDA out of memory"
    )


def test_no_status_times_out_naming_the_state(kube_api: KubeApiStandIn) -> None:
    with_namespace(kube_api)
    result = run_module(rayservice.main, args(wait_timeout=1))
    assert result["failed"] is True
    assert result["msg"] == (
        "RayService lab-llm/lab-llm: not ready after 1s; last seen: KubeRay has not observed generation 1 yet"
    )


def test_a_missing_namespace_is_a_clear_error(kube_api: KubeApiStandIn) -> None:
    result = run_module(rayservice.main, args())
    assert result["failed"] is True
    assert result["msg"] == 'RayService lab-llm/lab-llm: not found (HTTP 404): namespaces "lab-llm" not found'


def test_check_mode_stores_nothing(kube_api: KubeApiStandIn) -> None:
    with_namespace(kube_api)
    result = run_module(rayservice.main, args(), check_mode=True)
    assert result["changed"] is True
    assert kube_api.get(RAY, "RayService", "lab-llm", "lab-llm") is None


def test_absent_deletes(kube_api: KubeApiStandIn) -> None:
    with_namespace(kube_api)
    play_kuberay(kube_api)
    assert not run_module(rayservice.main, args()).get("failed")
    result = run_module(rayservice.main, dict(namespace="lab-llm", state="absent"))
    assert result["changed"] is True
    assert kube_api.get(RAY, "RayService", "lab-llm", "lab-llm") is None


def test_the_field_lists_are_lab_llms_config_fields() -> None:
    """The names the module allows are exactly those of lab-llm's config models; fails when config.py changes."""
    from ansible_collections.lab.llm.plugins.module_utils.serve import app_config
    from lab_llm.config import AuthConfig, EngineConfig, ServingConfig

    assert tuple(EngineConfig.model_fields) == app_config.ENGINE_FIELDS
    assert tuple(ServingConfig.model_fields) == app_config.SERVING_FIELDS
    assert tuple(AuthConfig.model_fields) == app_config.AUTH_FIELDS
