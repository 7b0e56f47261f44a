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
    description: GPU class of the VM, for example C(rtx-3090); becomes the node label C(lab-llm.io/gpu-class).
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
    description: More labels for the nodes of the group (C(nodeTemplate.labels)).
    type: dict
    default: {}
  node_taints:
    description: Taints of the nodes of the group (C(nodeTemplate.taints)); C(key), C(value), C(effect).
    type: list
    elements: dict
    default: [{key: nvidia.com/gpu, value: present, effect: NoSchedule}]
  gpu_sharing:
    description:
      - Let Deckhouse manage the NVIDIA GPUs of the group (NodeGroup C(spec.gpu.sharing)). Leave unset to manage
        them with the NVIDIA GPU Operator instead (other editions or older releases).
    type: str
    choices: [Exclusive, TimeSlicing]
  time_slicing_partitions:
    description: Partitions per GPU when O(gpu_sharing=TimeSlicing).
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
    description: SSH port of the VM.
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

import base64
import copy

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lab.llm.plugins.module_utils.k8s import deckhouse, waiter
from ansible_collections.lab.llm.plugins.module_utils.k8s.client import AUTH_ARG_SPEC, connect
from ansible_collections.lab.llm.plugins.module_utils.k8s.exceptions import K8sError
from ansible_collections.lab.llm.plugins.module_utils.k8s.node import drain as drain_node
from ansible_collections.lab.llm.plugins.module_utils.k8s.service import K8sService


def _redacted(manifest):
    shown = copy.deepcopy(manifest)
    for secret in ("privateSSHKey", "sudoPassword", "sudoPasswordEncoded"):
        if secret in shown.get("spec", {}):
            shown["spec"][secret] = "<redacted>"
    return shown


def _check(params):
    """Every problem with the options, before anything is touched."""
    problems = [deckhouse.check_node_group_name(params["node_group"])]
    if params["state"] == "present":
        if not params["gpu_class"]:
            problems.append("gpu_class is required with state=present")
        if params["bootstrap"] == "static_instance":
            if not params["address"]:
                problems.append("address is required with bootstrap=static_instance")
            else:
                problems.append(deckhouse.check_address(params["address"]))
            if not params["ssh_private_key"] and not params["sudo_password"]:
                problems.append("ssh_private_key (or sudo_password) is required with bootstrap=static_instance")
        for index, taint in enumerate(params["node_taints"]):
            if not taint.get("key") or taint.get("effect") not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
                problems.append(
                    "node_taints[%d]=%r: needs a key and effect NoSchedule, PreferNoSchedule or NoExecute"
                    % (index, taint)
                )
    return [problem for problem in problems if problem]


class StaticNode:
    def __init__(self, module, service):
        self.module = module
        self.params = module.params
        self.service = service
        self.caps_api = "deckhouse.io/%s" % self.params["caps_api_version"]
        self.credentials_name = self.params["credentials_name"] or "%s-ssh" % self.params["name"]
        self.changed = False
        self.diff = {"before": {}, "after": {}}
        self.applied = []
        self.drained = []

    def manifests(self, count):
        p = self.params
        static = p["bootstrap"] == "static_instance"
        group = deckhouse.node_group(
            p["node_group"],
            p["gpu_class"],
            count,
            p["node_labels"],
            [{k: v for k, v in t.items() if v is not None} for t in p["node_taints"]],
            p["gpu_sharing"],
            p["time_slicing_partitions"],
            static,
        )
        if not static:
            return [group]
        credentials = deckhouse.ssh_credentials(
            self.credentials_name,
            p["caps_api_version"],
            p["ssh_user"],
            p["ssh_private_key"] or "",
            p["ssh_port"],
            p["sudo_password"],
        )
        if not p["ssh_private_key"]:
            del credentials["spec"]["privateSSHKey"]
        instance = deckhouse.static_instance(
            p["name"], p["caps_api_version"], p["address"], self.credentials_name, p["node_group"]
        )
        return [credentials, instance, group]

    def apply(self, manifest):
        changed, before, after = self.service.apply(manifest)
        label = "%s/%s" % (manifest["kind"], manifest["metadata"]["name"])
        if changed:
            self.changed = True
            self.diff["before"][label] = _redacted(before) if before else None
            self.diff["after"][label] = _redacted(after)
        self.applied.append(_redacted(manifest))
        return after

    def group_count(self, including=None, excluding=None):
        members = {
            item["metadata"]["name"]
            for item in self.service.list(
                self.caps_api,
                "StaticInstance",
                label_selector="%s=%s" % (deckhouse.SELECTOR_LABEL, self.params["node_group"]),
            )
        }
        if including:
            members.add(including)
        members.discard(excluding)
        return len(members)

    def present(self):
        p = self.params
        result = {}
        if p["bootstrap"] == "script":
            self.apply(self.manifests(0)[0])
            node = self.service.get("v1", "Node", p["name"])
            if node is None:
                result["bootstrap_script"] = self.bootstrap_script()
            else:
                result["node_name"] = p["name"]
            return result
        credentials, instance = self.manifests(0)[:2]
        self.apply(credentials)
        self.apply(instance)
        self.apply(self.manifests(self.group_count(including=p["name"]))[2])
        if p["wait"] and not self.module.check_mode:
            obj = waiter.wait_for(
                self.service,
                self.caps_api,
                "StaticInstance",
                p["name"],
                None,
                waiter.static_instance_running,
                p["wait_timeout"],
            )
            node_name = ((obj.get("status") or {}).get("nodeRef") or {}).get("name") or p["name"]
            waiter.wait_for(self.service, "v1", "Node", node_name, None, waiter.node_ready, p["wait_timeout"])
            result.update(node_name=node_name, phase="Running")
        else:
            current = self.service.get(self.caps_api, "StaticInstance", p["name"]) or {}
            result["phase"] = (current.get("status") or {}).get("currentStatus", {}).get("phase", "Pending")
        return result

    def bootstrap_script(self):
        name = "manual-bootstrap-for-%s" % self.params["node_group"]
        secret = self.service.get("v1", "Secret", name, deckhouse.BOOTSTRAP_NAMESPACE)
        if secret is None:
            if self.module.check_mode:
                return ""
            raise K8sError(
                "not found; Deckhouse creates it for a Static NodeGroup",
                kind="Secret",
                name=name,
                namespace=deckhouse.BOOTSTRAP_NAMESPACE,
            )
        encoded = (secret.get("data") or {}).get("bootstrap.sh")
        if not encoded:
            raise K8sError(
                "has no data.bootstrap.sh", kind="Secret", name=name, namespace=deckhouse.BOOTSTRAP_NAMESPACE
            )
        return base64.b64decode(encoded).decode("utf-8")

    def drain(self, node_name):
        evicted = drain_node(self.service, node_name, self.params["drain_timeout"])
        if evicted:
            self.changed = True
        return evicted

    def absent(self):
        p = self.params
        if p["bootstrap"] == "script":
            self.drained = self.drain(p["name"])
            if self.service.delete("v1", "Node", p["name"]):
                self.changed = True
                self.diff["before"]["Node/%s" % p["name"]] = {"metadata": {"name": p["name"]}}
            return {}
        instance = self.service.get(self.caps_api, "StaticInstance", p["name"])
        if instance is not None:
            self.drained = self.drain(((instance.get("status") or {}).get("nodeRef") or {}).get("name") or p["name"])
            labels = instance["metadata"].get("labels") or {}
            if deckhouse.SELECTOR_LABEL in labels:
                released = deckhouse.static_instance(
                    p["name"],
                    p["caps_api_version"],
                    instance["spec"]["address"],
                    instance["spec"]["credentialsRef"]["name"],
                    None,
                )
                self.apply(released)
                group = self.service.get("deckhouse.io/v1", "NodeGroup", p["node_group"])
                if group is not None and "staticInstances" in group.get("spec", {}):
                    spec = group["spec"]
                    self.apply(
                        {
                            "apiVersion": deckhouse.NODE_GROUP_API,
                            "kind": "NodeGroup",
                            "metadata": {"name": p["node_group"]},
                            "spec": {
                                "nodeType": spec["nodeType"],
                                "staticInstances": dict(
                                    spec["staticInstances"], count=self.group_count(excluding=p["name"])
                                ),
                            },
                        }
                    )
            if p["wait"] and not self.module.check_mode:
                waiter.wait_for(
                    self.service,
                    self.caps_api,
                    "StaticInstance",
                    p["name"],
                    None,
                    waiter.static_instance_released,
                    p["wait_timeout"],
                )
            if self.service.delete(self.caps_api, "StaticInstance", p["name"]):
                self.changed = True
                self.diff["before"]["StaticInstance/%s" % p["name"]] = _redacted(instance)
        credentials = self.service.get(self.caps_api, "SSHCredentials", self.credentials_name)
        if credentials is not None and self.service.delete(self.caps_api, "SSHCredentials", self.credentials_name):
            self.changed = True
            self.diff["before"]["SSHCredentials/%s" % self.credentials_name] = _redacted(credentials)
        return {}


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        node_group=dict(type="str", required=True),
        gpu_class=dict(type="str"),
        address=dict(type="str"),
        bootstrap=dict(type="str", choices=["static_instance", "script"], default="static_instance"),
        node_labels=dict(type="dict", default={}),
        node_taints=dict(
            type="list",
            elements="dict",
            default=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
        ),
        gpu_sharing=dict(type="str", choices=["Exclusive", "TimeSlicing"]),
        time_slicing_partitions=dict(type="int", default=4),
        ssh_user=dict(type="str", default="caps"),
        ssh_private_key=dict(type="str", no_log=True),
        ssh_port=dict(type="int", default=22),
        sudo_password=dict(type="str", no_log=True),
        credentials_name=dict(type="str"),
        caps_api_version=dict(type="str", choices=["v1alpha1", "v1alpha2"], default="v1alpha2"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=1800),
        drain_timeout=dict(type="int", default=600),
        render_only=dict(type="bool", default=False),
    )
    argument_spec.update(AUTH_ARG_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    problems = _check(module.params)
    if problems:
        module.fail_json(msg="deckhouse_static_node %s: %s" % (module.params["name"], "; ".join(problems)))
    if module.params["render_only"]:
        node = StaticNode(module, None)
        # The count a render shows is this VM alone; applied, it is the number of StaticInstances of the group.
        module.exit_json(changed=False, manifests=[_redacted(m) for m in node.manifests(1)])
    try:
        node = StaticNode(module, K8sService(connect(module.params), check_mode=module.check_mode))
        result = node.present() if module.params["state"] == "present" else node.absent()
    except K8sError as error:
        module.fail_json(msg=str(error))
    for warning in node.service.warnings:
        module.warn(warning)
    module.exit_json(changed=node.changed, manifests=node.applied, evicted=node.drained, diff=node.diff, **result)


if __name__ == "__main__":
    main()
