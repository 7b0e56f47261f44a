#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: deckhouse_static_node
short_description: Join a GPU VM to a Deckhouse cluster as a static node (or remove it)
version_added: "0.1.0"
description:
  - Ensures the Deckhouse C(NodeGroup) (C(deckhouse.io/v1), C(nodeType=Static)) of one GPU class, with the GPU class
    label and a taint in C(nodeTemplate) so that only GPU workloads land on it.
  - With O(bootstrap=static_instance) (default) also ensures the VM's C(SSHCredentials) and C(StaticInstance)
    (Cluster API Provider Static, CAPS). The NodeGroup's C(staticInstances.count) is the number of StaticInstances
    labelled for the group, so adding one VM (C(--limit)) raises it by one. Then waits until the StaticInstance
    reaches phase C(Running) and its Node is C(Ready).
  - With O(bootstrap=script), the older manual flow, only the NodeGroup is ensured and the bootstrap script of
    the group (Secret C(manual-bootstrap-for-GROUP) in C(d8-cloud-instance-manager)) is returned in
    RV(bootstrap_script) while the Node is not registered yet, for the caller to run on the VM.
  - O(state=absent) first drains the Node (cordon, then every pod but DaemonSet and mirror pods evicted through the
    Eviction API, so PodDisruptionBudgets hold; waits until they are gone), then releases the StaticInstance (its
    group label is removed and the count lowered, so CAPS cleans the node, phase C(Cleaning) then C(Pending)),
    then deletes the StaticInstance and its SSHCredentials.
  - Versions. CAPS (StaticInstance, SSHCredentials) exists since Deckhouse 1.53 (C(v1alpha1)); current releases
    also serve C(v1alpha2), see O(caps_api_version). C(spec.gpu) of NodeGroup (Deckhouse manages the NVIDIA
    containerd runtime, device plugin, GFD, DCGM exporter) needs Deckhouse 1.71 or later, Enterprise Edition.
    The bootstrap-script flow works with every Deckhouse release that has C(nodeType=Static).
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
    description: Name of the VM; the StaticInstance is named so, and the Node the VM registers as is expected so too.
    type: str
    required: true
  node_group:
    description: NodeGroup of the VM's GPU class, for example C(gpu-rtx-3090) (at most 42 characters).
    type: str
    required: true
  gpu_class:
    description:
      - GPU class of the VM, for example C(rtx-3090); becomes the node label C(lab-llm.io/gpu-class), so it must be
        a Kubernetes label value (at most 63 of C([A-Za-z0-9_.-]), alphanumeric at both ends).
      - Required with O(state=present).
    type: str
  address:
    description: IPv4 address CAPS connects to over SSH. Required for O(bootstrap=static_instance), O(state=present).
    type: str
  bootstrap:
    description: How the VM joins. C(static_instance) is the CAPS flow, C(script) the bootstrap-script flow.
    type: str
    choices: [static_instance, script]
    default: static_instance
  node_labels:
    description:
      - More labels for the nodes of the group (C(nodeTemplate.labels)).
      - Keys and values must follow Kubernetes' label syntax; the module fails before its first write otherwise.
    type: dict
    default: {}
  node_taints:
    description: Taints of the nodes of the group (C(nodeTemplate.taints)); C(key), C(value), C(effect).
    type: list
    elements: dict
    default: [{key: nvidia.com/gpu, value: present, effect: NoSchedule}]
    suboptions:
      key:
        description: Taint key.
        type: str
        required: true
      value:
        description: Taint value.
        type: str
      effect:
        description: What the taint does to pods that do not tolerate it.
        type: str
        required: true
        choices: [NoSchedule, PreferNoSchedule, NoExecute]
  gpu_sharing:
    description:
      - Let Deckhouse manage the NVIDIA GPUs of the group (NodeGroup C(spec.gpu.sharing)). Leave unset to manage
        them with the NVIDIA GPU Operator instead (other editions or older releases).
    type: str
    choices: [Exclusive, TimeSlicing]
  time_slicing_partitions:
    description: Partitions per GPU when O(gpu_sharing=TimeSlicing), 1 to 100 (the NodeGroup CRD).
    type: int
    default: 4
  ssh_user:
    description: User CAPS logs in as (passwordless sudo, or O(sudo_password)).
    type: str
    default: caps
  ssh_private_key:
    description: Private SSH key (PEM/OpenSSH text) of O(ssh_user); keep it in a vaulted variable.
    type: str
  ssh_port:
    description: SSH port of the VM, 1 to 65535.
    type: int
    default: 22
  sudo_password:
    description: sudo password of O(ssh_user), when sudo asks for one.
    type: str
  credentials_name:
    description: Name of the SSHCredentials object; C(NAME-ssh) when unset.
    type: str
  caps_api_version:
    description: API version of StaticInstance and SSHCredentials; C(v1alpha1) for releases that serve no C(v1alpha2).
    type: str
    choices: [v1alpha1, v1alpha2]
    default: v1alpha2
  state:
    description: Whether the VM is a node of the cluster.
    type: str
    choices: [present, absent]
    default: present
  wait:
    description: Wait for StaticInstance C(Running) and Node C(Ready) (present) or the release of the VM (absent).
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait.
    type: int
    default: 1800
  drain_timeout:
    description: Seconds to wait for the pods to leave the node when O(state=absent).
    type: int
    default: 600
  render_only:
    description: Return the manifests (private key redacted) without contacting the cluster.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Join gpu-3090-1 through Cluster API Provider Static
  lab.llm.deckhouse_static_node:
    name: gpu-3090-1
    address: 192.0.2.21
    node_group: gpu-rtx-3090
    gpu_class: rtx-3090
    ssh_private_key: "{{ vault_caps_private_key }}"
    gpu_sharing: Exclusive
  delegate_to: localhost
  no_log: true

- name: Remove it again
  lab.llm.deckhouse_static_node:
    name: gpu-3090-1
    node_group: gpu-rtx-3090
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
manifests:
  description: The objects as applied (SSHCredentials with the key and sudo password redacted).
  returned: always
  type: list
  elements: dict
node_name:
  description: Name of the Node the VM registered as.
  returned: when the node is Ready
  type: str
  sample: gpu-3090-1
phase:
  description: Last seen phase of the StaticInstance.
  returned: O(bootstrap=static_instance)
  type: str
  sample: Running
evicted:
  description: Pods evicted from the node (C(namespace/name)) when O(state=absent).
  returned: always
  type: list
  elements: str
bootstrap_script:
  description: The group's bootstrap script to run on the VM (contains a join token; do not log it).
  returned: O(bootstrap=script), O(state=present), when the Node is not registered yet
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lab.llm.plugins.module_utils.k8s import deckhouse
from ansible_collections.lab.llm.plugins.module_utils.k8s.client import AUTH_ARG_SPEC
from ansible_collections.lab.llm.plugins.module_utils.k8s.static_node import (
    BOOTSTRAP_FLOWS,
    STATIC_INSTANCE,
    StaticNodeError,
    StaticNodeRunner,
)


def argument_spec() -> dict:
    spec = dict(
        name=dict(type="str", required=True),
        node_group=dict(type="str", required=True),
        gpu_class=dict(type="str"),
        address=dict(type="str"),
        bootstrap=dict(type="str", choices=list(BOOTSTRAP_FLOWS), default=STATIC_INSTANCE),
        node_labels=dict(type="dict", default={}),
        node_taints=dict(
            type="list",
            elements="dict",
            default=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
            options=dict(
                key=dict(type="str", required=True, no_log=False),
                value=dict(type="str"),
                effect=dict(type="str", required=True, choices=list(deckhouse.TAINT_EFFECTS)),
            ),
        ),
        gpu_sharing=dict(type="str", choices=list(deckhouse.GPU_SHARING_MODES)),
        time_slicing_partitions=dict(type="int", default=4),
        ssh_user=dict(type="str", default="caps"),
        ssh_private_key=dict(type="str", no_log=True),
        ssh_port=dict(type="int", default=22),
        sudo_password=dict(type="str", no_log=True),
        credentials_name=dict(type="str"),
        caps_api_version=dict(type="str", choices=list(deckhouse.CAPS_API_VERSIONS), default="v1alpha2"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=1800),
        drain_timeout=dict(type="int", default=600),
        render_only=dict(type="bool", default=False),
    )
    spec.update(AUTH_ARG_SPEC)
    return spec


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_if=[("state", "present", ("gpu_class",))],
        supports_check_mode=True,
    )
    try:
        result = StaticNodeRunner(module.params, module.check_mode, module.warn).run()
    except StaticNodeError as error:
        module.fail_json(msg=str(error))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
