# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render the KubeRay RayService (ray.io/v1) that runs the lab-llm Serve application on GPU worker groups.

Field names follow the RayService CRD of ray-project/kuberay (helm-chart/kuberay-operator/crds/
ray.io_rayservices.yaml). The Serve application's `args` are lab_llm's AppConfig (serve/lab_llm/config.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.lab.llm.plugins.module_utils.k8s.deckhouse import DECKHOUSE_GROUP_LABEL, GPU_CLASS_LABEL
from ansible_collections.lab.llm.plugins.module_utils.k8s.upgrade import NEW_CLUSTER
from ansible_collections.lab.llm.plugins.module_utils.requirements import missing_library
from ansible_collections.lab.llm.plugins.module_utils.serve.app_config import unknown_fields

try:
    from kubernetes.utils.quantity import parse_quantity
except ImportError:  # rendering says so when it meets a quantity (missing_library)
    parse_quantity = None  # type: ignore[assignment]

IMPORT_PATH = "lab_llm.app:build_app"
AUTH_STORE_DIR = "/var/lib/lab-llm/auth"
SIGNING_KEYS_DIR = "/etc/lab-llm/signing"
METRICS_PORT = 8080
SERVE_PORT = 8000
# Deckhouse monitoring-custom scrapes Pods/Services with this label; port and path from the annotations.
SCRAPE_LABEL = "prometheus.deckhouse.io/custom-target"
# The user the serving image runs as: rayproject/ray creates `ray` with uid 1000 and primary group `users` (gid 100)
# (ray-project/ray, docker/base-deps/Dockerfile: ARG RAY_UID=1000, ARG RAY_GID=100; serve/Dockerfile builds on it).
RAY_UID = 1000
RAY_GID = 100


# The one-hop request path (lab_llm.serve_env.ONE_HOP_ENV; a unit test keeps the two equal): HAProxy in front of the
# engine's replica, which serves HTTP itself. Ray Serve reads these at import in every Ray process, so they are set
# on the head and every worker container, where Ray starts (not in the Serve application's runtime_env). HAProxy
# listens on the serve port (8000), the only port the serve Service exposes; its side ports (stats 8404, metrics
# 9101, fallback proxy 8500/9500) and the replicas' own ports (30000-31000) are container ports that no Service or
# Ingress exposes, reachable only from inside the cluster network. The Serve controller (on the head) steps its
# control loop every 0.5 s instead of Ray's 0.1 s: less idle CPU, and replica changes are seen up to 0.4 s later.
ONE_HOP_ENV = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5",
}


class RenderError(ValueError):
    """The model spec cannot become a RayService; the message names the option and value."""


def plan_placement(
    spec: Mapping[str, Any],
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Engine settings, worker groups and placement bundles, taking the fit plan's where it is given.

    Returns ``(engine, worker_groups, bundles)``; ``bundles`` is the plan's ``ray_placement_bundles`` (one per rank,
    in rank order, each asking for its GPU class's Ray resource) or None. A plan's worker groups replace the given
    ones, but what the inventory sets per GPU class (``node_group``, ``cpu``, ``memory``) is kept.
    """
    given = spec.get("engine") or {}
    engine = dict(given)
    given_groups = {
        group["gpu_class"]: dict(group) for group in spec.get("worker_groups") or [] if "gpu_class" in group
    }
    worker_groups = [dict(group) for group in spec.get("worker_groups") or []]
    bundles: list[dict[str, Any]] | None = None
    plan = spec.get("fit_plan") or {}
    if plan:
        # The fit planner (lab.llm.llm_fit_plan) calls the engine settings `engine_config`. Its layout wins;
        # where the model is loaded from (a path on the cluster's volume) and its served name stay as given.
        engine.update(plan.get("engine") or plan.get("engine_config") or {})
        engine.update({key: given[key] for key in ("model", "served_model_name") if given.get(key)})
        if plan.get("worker_groups"):
            worker_groups = []
            for planned in plan["worker_groups"]:
                group = dict(given_groups.get(planned.get("gpu_class"), {}))
                group.update(
                    {key: planned[key] for key in ("gpu_class", "replicas", "gpus_per_worker") if key in planned}
                )
                worker_groups.append(group)
        if plan.get("ray_placement_bundles"):
            bundles = [dict(bundle) for bundle in plan["ray_placement_bundles"]]
    if not engine.get("model"):
        raise RenderError("engine.model is required (a path under model_volume.mount_path, or a model id)")
    if not worker_groups:
        raise RenderError("worker_groups: no GPU worker group given (and no fit_plan with worker_groups)")
    seen = set()
    for index, group in enumerate(worker_groups):
        for key in ("gpu_class", "replicas"):
            if key not in group:
                raise RenderError("worker_groups[%d]: missing %s in %r" % (index, key, group))
        if group["gpu_class"] in seen:
            raise RenderError("worker_groups[%d]: gpu_class %r listed twice" % (index, group["gpu_class"]))
        seen.add(group["gpu_class"])
        if int(group["replicas"]) < 1 or int(group.get("gpus_per_worker", 1)) < 1:
            raise RenderError(
                "worker_groups[%d] (%s): replicas and gpus_per_worker must be >= 1" % (index, group["gpu_class"])
            )
    for key in ("tensor_parallel_size", "pipeline_parallel_size"):
        value = engine.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise RenderError("engine.%s=%r: expected an integer >= 1" % (key, value))
    world = engine.get("tensor_parallel_size", 1) * engine.get("pipeline_parallel_size", 1)
    replicas = int((spec.get("serving") or {}).get("num_replicas", 1))
    gpus = sum(int(g["replicas"]) * int(g.get("gpus_per_worker", 1)) for g in worker_groups)
    if world * replicas > gpus:
        raise RenderError(
            "engine tensor_parallel_size x pipeline_parallel_size = %d per replica x %d replica(s) needs %d GPUs, "
            "but worker_groups provide %d" % (world, replicas, world * replicas, gpus)
        )
    if bundles is not None:
        _check_bundles(bundles, world, replicas, worker_groups)
    return engine, worker_groups, bundles


def _check_bundles(
    bundles: Sequence[Mapping[str, Any]], world: int, replicas: int, worker_groups: Sequence[Mapping[str, Any]]
) -> None:
    """Every rank's bundle names a GPU class some worker group advertises, with enough of its GPUs."""
    if len(bundles) != world:
        raise RenderError(
            "fit_plan.ray_placement_bundles has %d bundles but the engine has %d ranks (one bundle per rank)"
            % (len(bundles), world)
        )
    offered = dict((g["gpu_class"], int(g["replicas"]) * int(g.get("gpus_per_worker", 1))) for g in worker_groups)
    wanted: dict[str, int] = {}
    for index, bundle in enumerate(bundles):
        classes = [name for name in bundle if name not in ("CPU", "GPU", "memory")]
        if len(classes) != 1 or classes[0] not in offered:
            raise RenderError(
                "fit_plan.ray_placement_bundles[%d] = %r must name exactly one GPU class of the worker groups (%s)"
                % (index, bundle, ", ".join(sorted(offered)))
            )
        wanted[classes[0]] = wanted.get(classes[0], 0) + replicas
    for gpu_class, count in sorted(wanted.items()):
        if count > offered[gpu_class]:
            raise RenderError(
                "fit_plan.ray_placement_bundles ask for %d %s GPUs but its worker group offers %d"
                % (count, gpu_class, offered[gpu_class])
            )


def app_config(
    spec: Mapping[str, Any],
    engine: dict[str, Any],
    worker_pods: int = 1,
    bundles: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The AppConfig mapping (lab_llm.config) the Serve application gets as `args`.

    Unless `serving.proxy_replicas` is given, one placeholder replica runs on each of the `worker_pods` workers: Ray
    Serve runs its proxy (HAProxy) only on the head and where a replica runs, each worker's readiness probe reaches the
    gate through its node's proxy, and a worker that only holds a later pipeline stage would otherwise never be
    Ready (Ray's guide "RayService worker Pods aren't ready": a replica per worker node).
    """
    auth = dict(spec.get("auth") or {})
    auth["store_path"] = "%s/%s" % (AUTH_STORE_DIR, spec["auth_store"]["file"])
    auth["signing_keys_path"] = "%s/%s" % (SIGNING_KEYS_DIR, spec["signing_keys"]["file"])
    serving = dict(spec.get("serving") or {})
    serving.setdefault("accelerator", "gpu")
    serving.setdefault("proxy_replicas", worker_pods)
    if bundles is not None:
        # Each rank's bundle asks for its GPU class, which that class's workers advertise (rayStartParams below).
        serving["placement_bundles"] = bundles
    return {"engine": engine, "serving": serving, "auth": auth}


def serve_config(
    spec: Mapping[str, Any],
    engine: dict[str, Any],
    worker_pods: int = 1,
    bundles: list[dict[str, Any]] | None = None,
) -> str:
    """serveConfigV2: a Ray Serve config file (YAML; JSON is YAML), keys sorted so re-renders are identical."""
    application = {
        "name": spec["app_name"],
        "import_path": IMPORT_PATH,
        "route_prefix": "/",
        "args": app_config(spec, engine, worker_pods, bundles),
    }
    return json.dumps({"applications": [application]}, indent=2, sort_keys=True)


def _volumes(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    volumes = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec["shm_size"]}},
        {"name": "signing-keys", "secret": {"secretName": spec["signing_keys"]["secret_name"], "defaultMode": 0o440}},
    ]
    store = spec["auth_store"]
    if store.get("claim_name"):
        volumes.append({"name": "auth-store", "persistentVolumeClaim": {"claimName": store["claim_name"]}})
    else:
        volumes.append({"name": "auth-store", "secret": {"secretName": store["secret_name"], "defaultMode": 0o440}})
    model = spec.get("model_volume") or {}
    if model.get("claim_name"):
        volumes.append(
            {
                "name": "models",
                "persistentVolumeClaim": {
                    "claimName": model["claim_name"],
                    "readOnly": bool(model.get("read_only", True)),
                },
            }
        )
    return volumes


def _mounts(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"name": "dshm", "mountPath": "/dev/shm"},  # noqa: S108 (a tmpfs for NCCL/vLLM shared memory)
        {"name": "signing-keys", "mountPath": SIGNING_KEYS_DIR, "readOnly": True},
        {"name": "auth-store", "mountPath": AUTH_STORE_DIR, "readOnly": not spec["auth_store"].get("claim_name")},
    ]
    model = spec.get("model_volume") or {}
    if model.get("claim_name"):
        mounts.append(
            {"name": "models", "mountPath": model["mount_path"], "readOnly": bool(model.get("read_only", True))}
        )
    return mounts


def _env(spec: Mapping[str, Any]) -> list[dict[str, str]]:
    given = spec.get("env") or {}
    env = [
        {"name": "NCCL_SOCKET_IFNAME", "value": spec["nccl_socket_ifname"]},
        {"name": "NCCL_IB_DISABLE", "value": "1" if spec["nccl_ib_disable"] else "0"},
    ]
    env.extend({"name": name, "value": value} for name, value in sorted(ONE_HOP_ENV.items()) if name not in given)
    env.extend({"name": name, "value": str(value)} for name, value in sorted((spec.get("env") or {}).items()))
    return env


def _resources(cpu: str | int | float, memory: str, gpus: int = 0) -> dict[str, dict[str, str]]:
    requests = {"cpu": str(cpu), "memory": memory}
    limits = {"cpu": str(cpu), "memory": memory}
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
        requests["nvidia.com/gpu"] = str(gpus)
    return {"requests": requests, "limits": limits}


def _pod_metadata(spec: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    return {
        "labels": {SCRAPE_LABEL: spec["metrics_target"]},
        "annotations": {"prometheus.deckhouse.io/port": str(METRICS_PORT), "prometheus.deckhouse.io/path": "/metrics"},
    }


def _pod_security_context() -> dict[str, Any]:
    """The image's user and group for every Ray pod, and that group as `fsGroup`.

    Kubernetes gives `fsGroup` ownership of the volumes that support it: Secret files (mounted 0440) become readable by
    the group, and the auth store's PVC, whose directory ceph-csi creates root-owned 0755, becomes group-writable for
    the init container and the admin API. `OnRootMismatch` changes ownership only when the volume's root does not
    already match, so a large volume is not walked again on every start (Kubernetes docs, "Configure a Security
    Context for a Pod or Container": fsGroup, fsGroupChangePolicy). The runtime's default seccomp profile as well
    (Pod Security Standards, Restricted).
    """
    return {
        "runAsUser": RAY_UID,
        "runAsGroup": RAY_GID,
        "runAsNonRoot": True,
        "fsGroup": RAY_GID,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


# Readiness of a worker pod, which is what the serve Service routes to: the gate's /readyz through the pod's Serve proxy
# (200 only when the engine answers its health check within 5 s), instead of KubeRay's default for RayService
# workers, which checks the raylet and the proxy's `-/healthz` and so stays Ready while the engine is dead.
# KubeRay injects its own probe only when the container has none (ray-operator/controllers/ray/common/pod.go,
# initLivenessAndReadinessProbe; its liveness probe, the raylet check, is still injected). The timeout exceeds the
# gate's 5 s engine check; a second failure in a row takes the pod out of the Service.
READINESS_PROBE = {
    "httpGet": {"path": "/readyz", "port": SERVE_PORT},
    "initialDelaySeconds": 10,
    "periodSeconds": 5,
    "timeoutSeconds": 10,
    "successThreshold": 1,
    "failureThreshold": 2,
}

# Ray needs no Linux capability and no setuid: the image's user is unprivileged (Pod Security Standards, Restricted).
CONTAINER_SECURITY_CONTEXT = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _container(
    spec: Mapping[str, Any], name: str, resources: dict[str, dict[str, str]], ports: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "name": name,
        "image": spec["image"],
        "imagePullPolicy": "IfNotPresent",
        "env": _env(spec),
        "ports": ports,
        "resources": resources,
        "volumeMounts": _mounts(spec),
        "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "ray stop"]}}},
        "securityContext": dict(CONTAINER_SECURITY_CONTEXT),
    }


def _head_group(spec: Mapping[str, Any]) -> dict[str, Any]:
    head = spec["head"]
    ports = [
        {"name": "gcs", "containerPort": 6379},
        {"name": "dashboard", "containerPort": 8265},
        {"name": "client", "containerPort": 10001},
        {"name": "serve", "containerPort": SERVE_PORT},
        {"name": "metrics", "containerPort": METRICS_PORT},
    ]
    pod_spec: dict[str, Any] = {
        "securityContext": _pod_security_context(),
        # Ray does not call the Kubernetes API (no in-tree autoscaler): no service account token in the pods.
        "automountServiceAccountToken": False,
        "containers": [_container(spec, "ray-head", _resources(head["cpu"], head["memory"]), ports)],
        "volumes": _volumes(spec),
    }
    store = spec["auth_store"]
    if store.get("claim_name") and store.get("seed_secret_name"):
        # First start: copy the users/keys file the CLI wrote (kept in a Secret) into the writable volume,
        # never over a store that admins have changed since.
        pod_spec["volumes"].append({"name": "auth-seed", "secret": {"secretName": store["seed_secret_name"]}})
        target = "%s/%s" % (AUTH_STORE_DIR, store["file"])
        pod_spec["initContainers"] = [
            {
                "name": "seed-auth-store",
                "image": spec["image"],
                "command": ["/bin/sh", "-c", "[ -s %s ] || cp /seed/%s %s" % (target, store["file"], target)],
                "volumeMounts": [
                    {"name": "auth-store", "mountPath": AUTH_STORE_DIR},
                    {"name": "auth-seed", "mountPath": "/seed", "readOnly": True},
                ],
                "resources": _resources("100m", "64Mi"),
                "securityContext": dict(CONTAINER_SECURITY_CONTEXT),
            }
        ]
    if head.get("node_selector"):
        pod_spec["nodeSelector"] = dict(head["node_selector"])
    return {
        # num-cpus/num-gpus 0: the head advertises no resources, so no engine, replica or task lands on it and it fits
        # on any CPU node (as KubeRay's LLM samples do, e.g. ray-operator/config/samples/ray-service.llm-serve.yaml and
        # ray-service.no-ray-serve-replica.yaml; Ray docs, "RayService worker Pods aren't ready", step 3).
        # dashboard-host: the dashboard (and Serve's config API KubeRay calls) listens on the pod IP.
        "rayStartParams": {
            "num-cpus": "0",
            "num-gpus": "0",
            "dashboard-host": "0.0.0.0",  # noqa: S104
            "metrics-export-port": str(METRICS_PORT),
        },
        "template": {"metadata": _pod_metadata(spec), "spec": pod_spec},
    }


# <sign><digits>[.<digits>] followed by a binary suffix (Ki..Ei), a decimal one (n u m k M G T P E) or an exponent.
_QUANTITY = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?")


def quantity_bytes(value: str | int, what: str) -> int:
    """Bytes of a Kubernetes memory quantity (``32Gi``, ``32768Mi``, ``64G``, ``1073741824``), parsed by the
    kubernetes client (``kubernetes.utils.parse_quantity``, the rules of apimachinery's resource.Quantity);
    RenderError naming ``what`` for text that is no quantity, for no memory at all and for a fraction of a byte."""
    if parse_quantity is None:
        raise RenderError(missing_library("kubernetes", "to read Kubernetes quantities"))
    try:
        # parse_quantity reads the number with Decimal, which also takes spaces, `1_000`, `NaN` and `Infinity`;
        # the API server does not (the grammar of k8s.io/apimachinery/pkg/api/resource/quantity.go).
        if not isinstance(value, int) and not _QUANTITY.fullmatch(str(value)):
            raise ValueError(value)
        quantity = parse_quantity(value)
    except ValueError:
        raise RenderError("%s=%r is not a memory quantity (for example 32Gi)" % (what, value)) from None
    if quantity <= 0:
        raise RenderError(
            "%s=%r is no memory: a memory quantity is more than 0 bytes (for example 32Gi)" % (what, value)
        )
    if quantity != quantity.to_integral_value():
        raise RenderError(
            "%s=%r is %s bytes, a fraction of a byte: the suffix m means milli; mega is M, mebi Mi (for example 32Gi)"
            % (what, value, quantity)
        )
    return int(quantity)


def worker_memory(spec: Mapping[str, Any], group: Mapping[str, Any]) -> str:
    """Memory request and limit of one worker pod of ``group``.

    ``memory`` when the inventory sets it for the class; else ``node_memory`` (what the class's VM has) minus
    ``node_reserved_memory`` (kubelet, system daemons and the cluster's DaemonSets on that node); else
    ``worker_memory``. A pod asking for more than its node has is never scheduled, so that is refused.
    """
    where = "worker_groups (%s)" % group["gpu_class"]
    node = group.get("node_memory")
    if group.get("memory"):
        if node and quantity_bytes(group["memory"], where + ".memory") > quantity_bytes(node, where + ".node_memory"):
            raise RenderError(
                "%s: memory %s is more than the node has (node_memory %s); the worker could never be scheduled"
                % (where, group["memory"], node)
            )
        return group["memory"]
    if not node:
        return spec["worker_memory"]
    free = quantity_bytes(node, where + ".node_memory") - quantity_bytes(
        spec["node_reserved_memory"], "node_reserved_memory"
    )
    if free <= 0:
        raise RenderError(
            "%s: node_memory %s leaves nothing after node_reserved_memory %s"
            % (where, node, spec["node_reserved_memory"])
        )
    return "%dMi" % (free // 2**20)


def _worker_group(spec: Mapping[str, Any], group: Mapping[str, Any]) -> dict[str, Any]:
    gpu_class = group["gpu_class"]
    gpus = int(group.get("gpus_per_worker", 1))
    replicas = int(group["replicas"])
    node_selector = {GPU_CLASS_LABEL: gpu_class}
    if group.get("node_group"):
        node_selector[DECKHOUSE_GROUP_LABEL] = group["node_group"]
    taint = spec["gpu_taint"]
    container = _container(
        spec,
        "ray-worker",
        _resources(group.get("cpu") or spec["worker_cpu"], worker_memory(spec, group), gpus),
        [{"name": "metrics", "containerPort": METRICS_PORT}],
    )
    container["readinessProbe"] = dict(READINESS_PROBE)
    pod_spec: dict[str, Any] = {
        "securityContext": _pod_security_context(),
        "automountServiceAccountToken": False,
        "containers": [container],
        "volumes": _volumes(spec),
        "nodeSelector": node_selector,
        "tolerations": [{"key": taint["key"], "operator": "Exists", "effect": taint["effect"]}],
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {"ray.io/node-type": "worker", "ray.io/group": gpu_class}},
                        },
                    }
                ]
            }
        },
    }
    return {
        "groupName": gpu_class,
        "replicas": replicas,
        "minReplicas": replicas,
        "maxReplicas": replicas,
        # A custom resource named after the GPU class, one unit per GPU: the fit planner's placement bundles ask
        # for it so each pipeline stage lands on the cards it was sized for. Quoted as KubeRay passes it to
        # `ray start --resources`.
        "rayStartParams": {
            "num-gpus": str(gpus),
            "metrics-export-port": str(METRICS_PORT),
            "resources": "'%s'" % json.dumps({gpu_class: gpus}),
        },
        "template": {"metadata": _pod_metadata(spec), "spec": pod_spec},
    }


def render(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The RayService manifest for one model spec (the rayservice module's options, sub-option defaults applied).

    Raises RenderError naming the option when the spec cannot become a RayService.
    """
    if not spec.get("image"):
        raise RenderError("image is empty; give the image with Ray, vLLM and lab_llm (serve/Dockerfile)")
    for key in ("store_path", "signing_keys_path"):
        if key in (spec.get("auth") or {}):
            raise RenderError("auth.%s is set by this module from auth_store/signing_keys; remove it" % key)
    plan = spec.get("fit_plan") or {}
    problems = (
        unknown_fields("engine", "engine", spec.get("engine"))
        + unknown_fields("fit_plan.engine" if "engine" in plan else "fit_plan.engine_config", "engine",
                         plan.get("engine") or plan.get("engine_config"))
        + unknown_fields("serving", "serving", spec.get("serving"))
        + unknown_fields("auth", "auth", spec.get("auth"))
    )  # fmt: skip
    if problems:
        raise RenderError("; ".join(problems))
    engine, worker_groups, bundles = plan_placement(spec)
    head, workers = _head_group(spec), [_worker_group(spec, group) for group in worker_groups]
    if spec.get("engine_change_upgrade") == NEW_CLUSTER:
        # A change of the pod templates is a change of the cluster: KubeRay then brings up a new RayCluster and moves
        # traffic when it serves, instead of redeploying the Serve application in place.
        digest = hashlib.sha256(json.dumps(engine, sort_keys=True).encode("utf-8")).hexdigest()[:16]
        for group in [head, *workers]:
            group["template"]["metadata"]["annotations"]["lab-llm.io/engine-config"] = digest
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {
            "name": spec["name"],
            "namespace": spec["namespace"],
            "labels": {"app.kubernetes.io/name": "lab-llm", "app.kubernetes.io/instance": spec["name"]},
        },
        "spec": {
            "upgradeStrategy": {"type": spec["upgrade_strategy"]},
            # Traffic goes to the workers only, each Ready by the gate's /readyz (READINESS_PROBE). The head has no
            # such probe: KubeRay puts it in the serve Service by its `ray.io/serve` label, which it sets from the
            # head proxy's `-/healthz` alone (rayservice_controller.go, updateHeadPodServeLabel), so it would take
            # traffic while the engine is down. It runs no ingress replica (`num-cpus: 0`) and is not needed there.
            "excludeHeadPodFromServeSvc": True,
            "serveConfigV2": serve_config(
                spec, engine, sum(int(group["replicas"]) for group in worker_groups), bundles
            ),
            # KubeRay uses a given serveService for name, labels and annotations, and sets the selector and the
            # `serve` port itself (ray-operator/controllers/ray/common/service.go, BuildServeService).
            "serveService": {
                "metadata": {
                    "name": serve_service_name(spec["name"]),
                    "labels": {SCRAPE_LABEL: spec["metrics_target"]},
                    "annotations": {"prometheus.deckhouse.io/port": str(SERVE_PORT)},
                },
                "spec": {"ports": [{"name": "serve", "port": SERVE_PORT, "targetPort": SERVE_PORT}]},
            },
            "rayClusterConfig": {
                "rayVersion": spec["ray_version"],
                "headGroupSpec": head,
                "workerGroupSpecs": workers,
            },
        },
    }


def serve_service_name(name: str) -> str:
    """The Service in front of the Serve application (KubeRay's default name, set explicitly)."""
    return "%s-serve-svc" % name
