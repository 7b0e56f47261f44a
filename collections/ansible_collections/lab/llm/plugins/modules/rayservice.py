#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rayservice
short_description: Run the lab-llm Serve application as a KubeRay RayService on GPU worker groups
version_added: "0.1.0"
description:
  - Renders a C(ray.io/v1) RayService from one model spec and the GPU inventory, applies it (server-side apply),
    and waits until the Serve application is C(RUNNING) on the active RayCluster with no upgrade pending.
  - The head group gets no GPUs (C(num-gpus=0)). Each GPU class becomes one worker group requesting
    C(nvidia.com/gpu), selecting the nodes of its Deckhouse NodeGroup (C(node.deckhouse.io/group),
    C(lab-llm.io/gpu-class)) and tolerating their taint, spread over hosts by pod anti-affinity.
  - The Serve application is C(lab_llm.app:build_app); its C(args) are lab-llm's AppConfig (O(engine), O(serving),
    O(auth)) with the auth store and signing keys at the paths where their volumes are mounted.
  - Changing the engine or serving settings changes C(serveConfigV2), which KubeRay applies to the running
    cluster (Ray Serve replaces the replicas in place). Changing the image, the worker groups or anything else of
    the cluster makes KubeRay start a new RayCluster and move traffic once it serves (O(upgrade_strategy)
    C(NewCluster), zero downtime; it needs the GPUs of both clusters for a while). With
    O(engine_change_upgrade=new_cluster) engine changes take that zero-downtime path too.
  - Fails before touching the cluster when the worker groups provide fewer GPUs than
    C(tensor_parallel_size x pipeline_parallel_size x num_replicas).
  - With O(gpu_budget), also before touching the cluster (in check mode too) the GPUs are counted. When the change
    would make KubeRay prepare a second RayCluster (O(upgrade_strategy) C(NewCluster)), the GPUs of the one still
    serving count as well; if a GPU class would need more than the budget, the new cluster could never be
    scheduled, so the module fails (or warns, O(gpu_budget_check=warn)) and says what it would need.
author:
  - lab-llm developers (@lab-llm)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - lab.llm.k8s_auth
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
options:
  name:
    description: Name of the RayService; the Serve Service is C(NAME-serve-svc).
    type: str
    default: lab-llm
  namespace:
    description: Namespace of the RayService (it must exist).
    type: str
    default: lab-llm
  image:
    description: Image with Ray, vLLM and the lab_llm package (see C(serve/Dockerfile)); required with O(state=present).
    type: str
  ray_version:
    description: Ray version in the image (C(rayClusterConfig.rayVersion)).
    type: str
    default: "2.60.0"
  app_name:
    description: Name of the Serve application.
    type: str
    default: llm
  engine:
    description:
      - The C(engine) section of lab-llm's AppConfig (vLLM settings). C(model) is required here or in O(fit_plan);
        when given here, C(model) and C(served_model_name) win over the plan's. C(tensor_parallel_size) and
        C(pipeline_parallel_size) are integers >= 1 (default 1).
      - Only lab-llm's EngineConfig fields (vLLM engine argument names); an unknown key fails before any write.
    type: dict
  serving:
    description:
      - The C(serving) section of lab-llm's AppConfig; C(accelerator) defaults to C(gpu).
      - Only lab-llm's ServingConfig fields; an unknown key fails before any write.
    type: dict
    default: {}
  auth:
    description:
      - The C(auth) section of lab-llm's AppConfig without the file paths (C(store_path), C(signing_keys_path)),
        which this module sets from O(auth_store) and O(signing_keys); giving them is refused.
      - Only lab-llm's AuthConfig fields; an unknown key fails before any write.
    type: dict
    default: {}
  fit_plan:
    description:
      - Output of the fit planner (M(lab.llm.llm_fit_plan)). Its C(engine_config) (or C(engine)) settings
        override O(engine), its C(worker_groups) replace O(worker_groups) (keeping their C(node_group), C(cpu) and
        C(memory) per GPU class), and its C(ray_placement_bundles) become the app's C(serving.placement_bundles), so
        each pipeline stage lands on a worker of the GPU class it was sized for; other keys are ignored.
    type: dict
  worker_groups:
    description: GPU worker groups, one per GPU class.
    type: list
    elements: dict
    default: []
    suboptions:
      gpu_class:
        description: GPU class (node label C(lab-llm.io/gpu-class)), also the worker group name.
        type: str
        required: true
      replicas:
        description: Worker pods of this class.
        type: int
        required: true
      gpus_per_worker:
        description: GPUs per worker pod.
        type: int
        default: 1
      node_group:
        description: Deckhouse NodeGroup of the class; selected by C(node.deckhouse.io/group) when given.
        type: str
      cpu:
        description: CPU request and limit of a worker; O(worker_cpu) when unset.
        type: str
      memory:
        description:
          - Memory request and limit of a worker. When unset, O(worker_groups[].node_memory) minus
            O(node_reserved_memory), else O(worker_memory). Refused when larger than O(worker_groups[].node_memory).
        type: str
      node_memory:
        description:
          - Memory of one node (VM) of this class, such as C(32Gi) for a VM with 32 GiB; sizes the worker to fit it.
        type: str
  head:
    description: The head pod.
    type: dict
    suboptions:
      cpu:
        description: CPU request and limit of the head.
        type: str
        default: "2"
      memory:
        description: Memory request and limit of the head.
        type: str
        default: 8Gi
      node_selector:
        description: C(nodeSelector) of the head pod.
        type: dict
  worker_cpu:
    description: Default CPU of a worker pod.
    type: str
    default: "4"
  worker_memory:
    description: Default memory of a worker pod, for groups with neither C(memory) nor C(node_memory).
    type: str
    default: 32Gi
  node_reserved_memory:
    description:
      - What a GPU node keeps for itself (kubelet, system daemons, the cluster's DaemonSets); a worker group sized
        from C(node_memory) requests the rest. An estimate; set it to the node's capacity minus its allocatable
        memory (C(kubectl describe node)).
    type: str
    default: 4Gi
  model_volume:
    description: PVC with the model files (for example on CephFS); without O(model_volume.claim_name) no volume is
      mounted.
    type: dict
    suboptions:
      claim_name:
        description: The PersistentVolumeClaim.
        type: str
      mount_path:
        description: Where the Ray containers mount it.
        type: str
        default: /models
      read_only:
        description: Mount it read-only.
        type: bool
        default: true
  auth_store:
    description:
      - Where the users/API keys file comes from; required with O(state=present).
    type: dict
    suboptions:
      claim_name:
        description:
          - A PVC, writable, so admins can create API keys through the API. Exactly one of O(auth_store.claim_name)
            and O(auth_store.secret_name).
        type: str
      secret_name:
        description:
          - A Secret (read-only; keys are then made with the C(lab-llm keys create) CLI and the Secret updated).
        type: str
      seed_secret_name:
        description:
          - With O(auth_store.claim_name), a Secret holding the first version of the file; an init container of
            the head copies it into the volume when the volume has none yet.
        type: str
      file:
        description: The file inside the volume or Secret.
        type: str
        default: store.yaml
  signing_keys:
    description: Secret with the JWT signing keys; required with O(state=present).
    type: dict
    suboptions:
      secret_name:
        description: The Secret.
        type: str
        required: true
      file:
        description: The key of the Secret holding the keys file.
        type: str
        default: signing-keys.yaml
  nccl_socket_ifname:
    description: C(NCCL_SOCKET_IFNAME) of the pods (the interface of the pod network).
    type: str
    default: eth0
  nccl_ib_disable:
    description: Set C(NCCL_IB_DISABLE=1) (no InfiniBand in consumer labs).
    type: bool
    default: true
  shm_size:
    description: Size of the memory-backed C(/dev/shm).
    type: str
    default: 16Gi
  env:
    description: More environment variables of the Ray containers.
    type: dict
    default: {}
  gpu_taint:
    description: Taint of the GPU nodes the workers tolerate.
    type: dict
    suboptions:
      key:
        description: The taint's key.
        type: str
        default: nvidia.com/gpu
      effect:
        description: The taint's effect.
        type: str
        choices: [NoSchedule, PreferNoSchedule, NoExecute]
        default: NoSchedule
  metrics_target:
    description: Value of the C(prometheus.deckhouse.io/custom-target) label (Deckhouse monitoring-custom).
    type: str
    default: lab-llm
  engine_change_upgrade:
    description:
      - How a change of the engine settings (a new model, TP/PP, ...) reaches the cluster. C(in_place) lets KubeRay
        redeploy the Serve application on the running RayCluster (the model is unavailable while it reloads, but no
        extra GPUs are needed). C(new_cluster) marks the pod templates with a digest of the engine settings, so
        KubeRay performs its zero-downtime upgrade (a second RayCluster; needs free GPUs for it).
    type: str
    choices: [in_place, new_cluster]
    default: in_place
  upgrade_strategy:
    description: KubeRay C(upgradeStrategy.type).
    type: str
    choices: [NewCluster, NewClusterWithIncrementalUpgrade, None]
    default: NewCluster
  gpu_budget:
    description:
      - GPUs the cluster has for lab-llm, per GPU class (C(rtx-3090) -> 3). Without it, nothing is checked.
    type: dict
  gpu_budget_check:
    description: What to do when the change cannot be scheduled within O(gpu_budget).
    type: str
    choices: [fail, warn]
    default: fail
  state:
    description: Whether the RayService exists.
    type: str
    choices: [present, absent]
    default: present
  wait:
    description: Wait until the application is C(RUNNING) and no upgrade is pending.
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait (loading a large model takes minutes).
    type: int
    default: 1800
  render_only:
    description: Return the manifest without contacting the cluster.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Serve Qwen2.5-32B-AWQ on three RTX 3090 and one RTX 3060
  lab.llm.rayservice:
    namespace: lab-llm
    image: registry.example.org/lab-llm/serve:0.1.0
    engine:
      model: /models/Qwen2.5-32B-Instruct-AWQ
      served_model_name: qwen2.5-32b
      tensor_parallel_size: 2
      pipeline_parallel_size: 2
      quantization: awq_marlin
    worker_groups:
      - {gpu_class: rtx-3090, replicas: 3, node_group: gpu-rtx-3090}
      - {gpu_class: rtx-3060, replicas: 1, node_group: gpu-rtx-3060}
    model_volume: {claim_name: models-cephfs, mount_path: /models}
    auth_store: {claim_name: lab-llm-auth}
    signing_keys: {secret_name: lab-llm-signing-keys}
  delegate_to: localhost
"""

RETURN = r"""
manifest:
  description: The RayService as rendered.
  returned: always
  type: dict
serve_service:
  description: Name of the Service in front of the Serve application (port 8000).
  returned: always
  type: str
  sample: lab-llm-serve-svc
ray_cluster:
  description: The active RayCluster.
  returned: when waited for
  type: str
application_status:
  description: Serve status of the application on the active cluster.
  returned: when waited for
  type: str
  sample: RUNNING
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lab.llm.plugins.module_utils.k8s.client import AUTH_ARG_SPEC
from ansible_collections.lab.llm.plugins.module_utils.k8s.deckhouse import TAINT_EFFECTS
from ansible_collections.lab.llm.plugins.module_utils.k8s.rayservice_runner import RayServiceError, RayServiceRunner
from ansible_collections.lab.llm.plugins.module_utils.k8s.upgrade import (
    ENGINE_CHANGE_UPGRADES,
    IN_PLACE,
    UPGRADE_STRATEGIES,
)


def argument_spec() -> dict:
    spec = dict(
        name=dict(type="str", default="lab-llm"),
        namespace=dict(type="str", default="lab-llm"),
        image=dict(type="str"),
        ray_version=dict(type="str", default="2.60.0"),
        app_name=dict(type="str", default="llm"),
        engine=dict(type="dict"),
        serving=dict(type="dict", default={}),
        auth=dict(type="dict", default={}),
        fit_plan=dict(type="dict"),
        worker_groups=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(
                gpu_class=dict(type="str", required=True),
                replicas=dict(type="int", required=True),
                gpus_per_worker=dict(type="int", default=1),
                node_group=dict(type="str"),
                cpu=dict(type="str"),
                memory=dict(type="str"),
                node_memory=dict(type="str"),
            ),
        ),
        node_reserved_memory=dict(type="str", default="4Gi"),
        head=dict(
            type="dict",
            apply_defaults=True,
            options=dict(
                cpu=dict(type="str", default="2"),
                memory=dict(type="str", default="8Gi"),
                node_selector=dict(type="dict"),
            ),
        ),
        worker_cpu=dict(type="str", default="4"),
        worker_memory=dict(type="str", default="32Gi"),
        model_volume=dict(
            type="dict",
            apply_defaults=True,
            options=dict(
                claim_name=dict(type="str"),
                mount_path=dict(type="str", default="/models"),
                read_only=dict(type="bool", default=True),
            ),
        ),
        auth_store=dict(
            type="dict",
            options=dict(
                claim_name=dict(type="str"),
                secret_name=dict(type="str", no_log=False),
                seed_secret_name=dict(type="str", no_log=False),
                file=dict(type="str", default="store.yaml"),
            ),
            required_one_of=[("claim_name", "secret_name")],
            mutually_exclusive=[("claim_name", "secret_name")],
            required_by={"seed_secret_name": "claim_name"},
        ),
        signing_keys=dict(
            type="dict",
            no_log=False,
            options=dict(
                secret_name=dict(type="str", required=True, no_log=False),
                file=dict(type="str", default="signing-keys.yaml"),
            ),
        ),
        nccl_socket_ifname=dict(type="str", default="eth0"),
        nccl_ib_disable=dict(type="bool", default=True),
        shm_size=dict(type="str", default="16Gi"),
        env=dict(type="dict", default={}),
        gpu_taint=dict(
            type="dict",
            apply_defaults=True,
            options=dict(
                key=dict(type="str", default="nvidia.com/gpu", no_log=False),
                effect=dict(type="str", choices=list(TAINT_EFFECTS), default="NoSchedule"),
            ),
        ),
        metrics_target=dict(type="str", default="lab-llm"),
        engine_change_upgrade=dict(type="str", choices=list(ENGINE_CHANGE_UPGRADES), default=IN_PLACE),
        upgrade_strategy=dict(type="str", choices=list(UPGRADE_STRATEGIES), default="NewCluster"),
        gpu_budget=dict(type="dict"),
        gpu_budget_check=dict(type="str", choices=["fail", "warn"], default="fail"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=1800),
        render_only=dict(type="bool", default=False),
    )
    spec.update(AUTH_ARG_SPEC)
    return spec


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_if=[("state", "present", ("image", "auth_store", "signing_keys"))],
        supports_check_mode=True,
    )
    try:
        result = RayServiceRunner(module.params, module.check_mode, module.warn).run()
    except RayServiceError as error:
        module.fail_json(msg=str(error), **error.result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
