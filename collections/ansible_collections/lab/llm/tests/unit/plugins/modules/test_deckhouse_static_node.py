"""lab.llm.deckhouse_static_node against the Kubernetes API stand-in, a test playing Deckhouse CAPS."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from ansible_collections.lab.llm.plugins.modules import deckhouse_static_node
from tests.module_runner import run_module
from tests.standins.k8s import fixtures
from tests.standins.k8s.controllers import play_caps
from tests.standins.k8s.server import KubeApiStandIn

kube_api = fixtures.kube_api

CAPS = "deckhouse.io/v1alpha2"
# Built from parts so secret scanners do not take this test-only stand-in for a real key.
KEY = "-----BEGIN OPENSSH " + "PRIVATE KEY-----\ntest-only-not-a-key\n-----END OPENSSH " + "PRIVATE KEY-----\n"


def args(name: str = "gpu-3090-1", address: str = "192.0.2.21", **extra: Any) -> dict[str, Any]:
    base = dict(
        name=name,
        address=address,
        node_group="gpu-rtx-3090",
        gpu_class="rtx-3090",
        ssh_private_key=KEY,
        gpu_sharing="Exclusive",
        wait_timeout=10,
    )
    return {**base, **extra}


def test_vm_joins_through_caps_and_a_second_run_changes_nothing(kube_api: KubeApiStandIn) -> None:
    play_caps(kube_api)
    result = run_module(deckhouse_static_node.main, args())
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert (result["node_name"], result["phase"]) == ("gpu-3090-1", "Running")
    assert "test-only-not-a-key" not in json.dumps(result)  # the key never shows in output

    credentials = kube_api.get(CAPS, "SSHCredentials", "gpu-3090-1-ssh")
    assert credentials is not None
    assert base64.b64decode(credentials["spec"]["privateSSHKey"]).decode() == KEY
    instance = kube_api.get(CAPS, "StaticInstance", "gpu-3090-1")
    assert instance["spec"] == {
        "address": "192.0.2.21",
        "credentialsRef": {"kind": "SSHCredentials", "name": "gpu-3090-1-ssh"},
    }
    group = kube_api.get("deckhouse.io/v1", "NodeGroup", "gpu-rtx-3090")
    assert group["spec"]["staticInstances"] == {
        "count": 1,
        "labelSelector": {"matchLabels": {"lab-llm.io/node-group": "gpu-rtx-3090"}},
    }
    assert group["spec"]["nodeTemplate"]["labels"] == {"lab-llm.io/gpu-class": "rtx-3090"}
    assert group["spec"]["nodeTemplate"]["taints"] == [
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    ]
    assert group["spec"]["gpu"] == {"sharing": "Exclusive"}

    again = run_module(deckhouse_static_node.main, args())
    assert again["changed"] is False, again.get("diff")


def test_adding_one_more_vm_raises_the_group_count(kube_api: KubeApiStandIn) -> None:
    play_caps(kube_api)
    assert not run_module(deckhouse_static_node.main, args()).get("failed")
    second = run_module(deckhouse_static_node.main, args(name="gpu-3090-2", address="192.0.2.22"))
    assert second["changed"] is True
    assert second["node_name"] == "gpu-3090-2"
    group = kube_api.get("deckhouse.io/v1", "NodeGroup", "gpu-rtx-3090")
    assert group["spec"]["staticInstances"]["count"] == 2


def test_a_vm_stuck_bootstrapping_times_out_naming_its_phase(kube_api: KubeApiStandIn) -> None:
    play_caps(kube_api, stop_at="Bootstrapping")
    result = run_module(deckhouse_static_node.main, args(wait_timeout=1))
    assert result["failed"] is True
    assert result["msg"] == "StaticInstance gpu-3090-1: not ready after 1s; last seen: phase Bootstrapping"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"address": "gpu-3090-1.lab"}, "address='gpu-3090-1.lab': a StaticInstance address must be an IPv4"),
        ({"node_group": "GPU_3090"}, "node_group='GPU_3090': a NodeGroup name is lowercase"),
        ({"ssh_private_key": None}, "ssh_private_key (or sudo_password) is required"),
        # The argument spec carries these rules (sub-options with choices, required_if): Ansible's own wording.
        (
            {"node_taints": [{"key": "gpu", "effect": "Never"}]},
            "value of effect must be one of: NoSchedule, PreferNoSchedule, NoExecute, got: Never found in node_taints",
        ),
        ({"node_taints": [{"effect": "NoSchedule"}]}, "missing required arguments: key found in node_taints"),
        ({"gpu_class": " "}, "gpu_class is empty"),
        ({"caps_api_version": "v1beta1"}, "value of caps_api_version must be one of: v1alpha1, v1alpha2"),
        # Values the CRDs and Kubernetes' label rules would refuse (422) after the SSHCredentials and StaticInstance
        # were already written.
        ({"gpu_sharing": "TimeSlicing", "time_slicing_partitions": -3}, "time_slicing_partitions=-3: the NodeGroup"),
        ({"time_slicing_partitions": 101}, "time_slicing_partitions=101"),
        ({"gpu_class": "rtx 3090"}, "gpu_class: value 'rtx 3090' is not a Kubernetes label value"),
        ({"gpu_class": "x" * 64}, "is not a Kubernetes label value"),
        ({"node_labels": {"bad key!": "v"}}, "node_labels: key 'bad key!' is not a Kubernetes label key"),
        ({"node_labels": {"lab/tier": "a b"}}, "node_labels[lab/tier]: value 'a b' is not a Kubernetes label value"),
        ({"node_labels": {"Bad_Prefix/tier": "a"}}, "key 'Bad_Prefix/tier' is not a Kubernetes label key"),
        ({"node_labels": {"/tier": "a"}}, "key '/tier' is not a Kubernetes label key"),
        ({"node_taints": [{"key": "gpu!", "effect": "NoSchedule"}]}, "node_taints[0]: key 'gpu!' is not"),
        ({"node_taints": [{"key": "gpu", "value": "-x", "effect": "NoSchedule"}]}, "node_taints[0]: value '-x'"),
        ({"name": "GPU_1"}, "name='GPU_1': Kubernetes requires a lowercase RFC 1123 subdomain"),
        ({"credentials_name": "ssh key"}, "credentials_name='ssh key'"),
        ({"ssh_port": 0}, "ssh_port=0: the SSHCredentials CRD allows 1 to 65535"),
    ],
)
def test_bad_input_fails_before_any_api_call(kube_api: KubeApiStandIn, bad: dict[str, Any], message: str) -> None:
    result = run_module(deckhouse_static_node.main, {**args(), **bad})
    assert result["failed"] is True
    assert message in result["msg"]
    assert kube_api.requests == []


def test_good_labels_and_taints_pass_the_checks_and_reach_the_node_group(kube_api: KubeApiStandIn) -> None:
    play_caps(kube_api)
    labels = {"example.com/tier": "gpu.large_1", "zone": "", "a": "b"}
    taint = {"key": "example.com/dedicated", "value": "llm", "effect": "NoSchedule"}
    result = run_module(
        deckhouse_static_node.main,
        args(node_labels=labels, node_taints=[taint], gpu_sharing="TimeSlicing", time_slicing_partitions=100),
    )
    assert not result.get("failed"), result
    group = kube_api.get("deckhouse.io/v1", "NodeGroup", "gpu-rtx-3090")
    assert group["spec"]["nodeTemplate"]["labels"] == {**labels, "lab-llm.io/gpu-class": "rtx-3090"}
    assert group["spec"]["gpu"]["timeSlicing"] == {"partitionCount": 100}


def test_gpu_class_is_required_to_join(kube_api: KubeApiStandIn) -> None:
    without_class = {key: value for key, value in args().items() if key != "gpu_class"}
    result = run_module(deckhouse_static_node.main, without_class)
    assert result["failed"] is True
    assert result["msg"] == "state is present but all of the following are missing: gpu_class"
    assert kube_api.requests == []


def test_check_mode_reports_the_change_and_stores_nothing(kube_api: KubeApiStandIn) -> None:
    result = run_module(deckhouse_static_node.main, args(), check_mode=True)
    assert result["changed"] is True
    assert "NodeGroup/gpu-rtx-3090" in result["diff"]["after"]
    assert kube_api.names(CAPS, "StaticInstance") == []
    assert kube_api.names("deckhouse.io/v1", "NodeGroup") == []


def pod(name: str, node_name: str, owner_kind: str = "ReplicaSet") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "lab-llm",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner_kind, "name": "owner", "uid": "u1"}],
        },
        "spec": {"nodeName": node_name, "containers": [{"name": "c", "image": "busybox"}]},
    }


def test_absent_drains_and_releases_the_vm_then_deletes_its_objects(kube_api: KubeApiStandIn) -> None:
    play_caps(kube_api)
    assert not run_module(deckhouse_static_node.main, args()).get("failed")
    kube_api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "lab-llm"}})
    kube_api.put(pod("ray-worker-0", "gpu-3090-1"))
    kube_api.put(pod("device-plugin-x", "gpu-3090-1", owner_kind="DaemonSet"))
    kube_api.put(pod("elsewhere", "gpu-3090-2"))
    result = run_module(
        deckhouse_static_node.main, dict(name="gpu-3090-1", node_group="gpu-rtx-3090", state="absent", wait_timeout=10)
    )
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert result["evicted"] == ["lab-llm/ray-worker-0"]
    assert kube_api.names("v1", "Pod") == ["device-plugin-x", "elsewhere"]  # DaemonSet pods stay, as kubectl drain
    assert kube_api.get("v1", "Node", "gpu-3090-1")["spec"]["unschedulable"] is True
    assert kube_api.names(CAPS, "StaticInstance") == []
    assert kube_api.names(CAPS, "SSHCredentials") == []
    assert kube_api.get("deckhouse.io/v1", "NodeGroup", "gpu-rtx-3090")["spec"]["staticInstances"]["count"] == 0
    again = run_module(deckhouse_static_node.main, dict(name="gpu-3090-1", node_group="gpu-rtx-3090", state="absent"))
    assert again["changed"] is False


def test_absent_lowers_the_count_and_keeps_what_the_other_nodes_of_the_group_need(kube_api: KubeApiStandIn) -> None:
    """Lowering staticInstances.count is a server-side apply by the manager that applied the whole NodeGroup: a field
    that apply leaves out is removed (Kubernetes server-side apply, "Field management"), so it must carry them all."""
    play_caps(kube_api)
    for name, address in (("gpu-3090-1", "192.0.2.21"), ("gpu-3090-2", "192.0.2.22")):
        assert not run_module(deckhouse_static_node.main, args(name, address)).get("failed")
    joined = kube_api.get("deckhouse.io/v1", "NodeGroup", "gpu-rtx-3090")["spec"]
    assert joined["staticInstances"]["count"] == 2

    result = run_module(
        deckhouse_static_node.main, dict(name="gpu-3090-1", node_group="gpu-rtx-3090", state="absent", wait_timeout=10)
    )
    assert not result.get("failed"), result
    left = kube_api.get("deckhouse.io/v1", "NodeGroup", "gpu-rtx-3090")["spec"]
    assert left["staticInstances"]["count"] == 1
    assert left == dict(joined, staticInstances=dict(joined["staticInstances"], count=1))
    assert kube_api.names(CAPS, "StaticInstance") == ["gpu-3090-2"]
    # The remaining node's next run changes nothing: the group is as present() renders it for one node.
    assert run_module(deckhouse_static_node.main, args("gpu-3090-2", "192.0.2.22"))["changed"] is False


def test_script_flow_returns_the_groups_bootstrap_script(kube_api: KubeApiStandIn) -> None:
    kube_api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "d8-cloud-instance-manager"}})
    script = "#!/bin/bash\necho join\n"
    kube_api.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "manual-bootstrap-for-gpu-rtx-3060", "namespace": "d8-cloud-instance-manager"},
            "data": {"bootstrap.sh": base64.b64encode(script.encode()).decode()},
        }
    )
    result = run_module(
        deckhouse_static_node.main,
        dict(name="gpu-3060-1", node_group="gpu-rtx-3060", gpu_class="rtx-3060", bootstrap="script"),
    )
    assert not result.get("failed"), result
    assert result["bootstrap_script"] == script
    group = kube_api.get("deckhouse.io/v1", "NodeGroup", "gpu-rtx-3060")
    assert "staticInstances" not in group["spec"]
    assert group["spec"]["nodeTemplate"]["labels"]["lab-llm.io/gpu-class"] == "rtx-3060"
