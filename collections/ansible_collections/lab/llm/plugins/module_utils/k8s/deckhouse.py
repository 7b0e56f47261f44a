# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Manifests of Deckhouse static GPU nodes: NodeGroup, SSHCredentials, StaticInstance.

Built from the CRDs in deckhouse/deckhouse `modules/040-node-manager/crds/`: node_group.yaml (NodeGroup
deckhouse.io/v1: nodeType Static, nodeTemplate labels/taints, staticInstances.count/labelSelector, and
`gpu` — Enterprise Edition, Deckhouse >= 1.71), staticinstance.yaml and sshcredentials.yaml (Cluster API
Provider Static, added in Deckhouse 1.53; v1alpha1 everywhere since, v1alpha2 served by current releases).
"""

from __future__ import annotations

import base64
import re
from typing import Any

NODE_GROUP_API = "deckhouse.io/v1"
CAPS_API_VERSIONS = ("v1alpha1", "v1alpha2")
SELECTOR_LABEL = "lab-llm.io/node-group"
GPU_CLASS_LABEL = "lab-llm.io/gpu-class"
# Deckhouse puts this label on every node of a group (node-manager); workloads select on it.
DECKHOUSE_GROUP_LABEL = "node.deckhouse.io/group"
BOOTSTRAP_NAMESPACE = "d8-cloud-instance-manager"
# nodeTemplate.taints[].effect in node_group.yaml, the effects of core/v1 Taint.
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
# spec.gpu.sharing of a NodeGroup that lab-llm sets (the CRD also has MIG, which consumer GeForce cards lack).
GPU_SHARING_MODES = ("Exclusive", "TimeSlicing")
# spec.gpu.timeSlicing.partitionCount of a NodeGroup: minimum 1, maximum 100 (node_group.yaml CRD).
TIME_SLICING_PARTITIONS = (1, 100)

_NODE_GROUP_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # NodeGroup CRD: pattern, maxLength 42
_IPV4 = re.compile(r"^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$")  # StaticInstance spec.address pattern


def check_node_group_name(name: str) -> str | None:
    """None, or why `name` cannot name a NodeGroup."""
    if len(name) > 42 or not _NODE_GROUP_NAME.match(name):
        return "node_group=%r: a NodeGroup name is lowercase letters, digits and '-', at most 42 characters" % name
    return None


def check_address(address: str) -> str | None:
    """None, or why `address` cannot be a StaticInstance's spec.address."""
    if not _IPV4.match(address) or any(int(part) > 255 for part in address.split(".")):
        return "address=%r: a StaticInstance address must be an IPv4 address (the CRD allows no host names)" % address
    return None


def node_group(
    name: str,
    gpu_class: str,
    count: int,
    labels: dict[str, str],
    taints: list[dict[str, str]],
    gpu_sharing: str | None,
    time_slicing_partitions: int,
    use_static_instances: bool,
) -> dict[str, Any]:
    """A Static NodeGroup for one GPU class; CAPS adopts the StaticInstances labelled for it."""
    spec: dict[str, Any] = {
        "nodeType": "Static",
        "nodeTemplate": {
            "labels": dict(labels, **{GPU_CLASS_LABEL: gpu_class}),
            "taints": [dict(taint) for taint in taints],
        },
    }
    if use_static_instances:
        spec["staticInstances"] = {"count": count, "labelSelector": {"matchLabels": {SELECTOR_LABEL: name}}}
    if gpu_sharing:
        spec["gpu"] = {"sharing": gpu_sharing}
        if gpu_sharing == "TimeSlicing":
            spec["gpu"]["timeSlicing"] = {"partitionCount": time_slicing_partitions}
    return {"apiVersion": NODE_GROUP_API, "kind": "NodeGroup", "metadata": {"name": name}, "spec": spec}


def node_group_count(name: str, spec: dict[str, Any], count: int) -> dict[str, Any]:
    """The fields of a live NodeGroup (its ``spec``) that an apply sets to change ``staticInstances.count`` only."""
    return {
        "apiVersion": NODE_GROUP_API,
        "kind": "NodeGroup",
        "metadata": {"name": name},
        "spec": {"nodeType": spec["nodeType"], "staticInstances": dict(spec["staticInstances"], count=count)},
    }


def static_instance_phase(obj: dict[str, Any], missing: str) -> str:
    """``status.currentStatus.phase`` of a StaticInstance, or ``missing`` when it has none yet."""
    return ((obj.get("status") or {}).get("currentStatus") or {}).get("phase") or missing


def node_name_of(instance: dict[str, Any], default: str) -> str:
    """The Node a StaticInstance became (``status.nodeRef.name``), or ``default`` before it has one."""
    return ((instance.get("status") or {}).get("nodeRef") or {}).get("name") or default


def ssh_credentials(
    name: str, api_version: str, user: str, private_key: str, port: int, sudo_password: str | None
) -> dict[str, Any]:
    """SSHCredentials: the private key base64-encoded as the CRD asks; sudo password field per version."""
    spec: dict[str, Any] = {
        "user": user,
        "privateSSHKey": base64.b64encode(private_key.encode("utf-8")).decode("ascii"),
        "sshPort": port,
    }
    if sudo_password:
        if api_version == "v1alpha2":
            spec["sudoPasswordEncoded"] = base64.b64encode(sudo_password.encode("utf-8")).decode("ascii")
        else:
            spec["sudoPassword"] = sudo_password
    return {
        "apiVersion": "deckhouse.io/%s" % api_version,
        "kind": "SSHCredentials",
        "metadata": {"name": name},
        "spec": spec,
    }


def static_instance(
    name: str, api_version: str, address: str, credentials_name: str, node_group_name: str | None
) -> dict[str, Any]:
    """A StaticInstance for one VM; the label is what its NodeGroup's staticInstances selector matches."""
    labels = {SELECTOR_LABEL: node_group_name} if node_group_name else {}
    return {
        "apiVersion": "deckhouse.io/%s" % api_version,
        "kind": "StaticInstance",
        "metadata": {"name": name, "labels": labels},
        "spec": {"address": address, "credentialsRef": {"kind": "SSHCredentials", "name": credentials_name}},
    }
