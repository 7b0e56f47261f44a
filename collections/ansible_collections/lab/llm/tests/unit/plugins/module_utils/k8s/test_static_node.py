"""module_utils/k8s/static_node.py against the Kubernetes API stand-in with Deckhouse CAPS played by its controller:
wrong options refused before the first call, render_only and check mode write nothing, a second run changes nothing,
and a failed call names the object."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.lab.llm.plugins.module_utils.k8s.static_node import StaticNodeError, StaticNodeRunner
from ansible_collections.lab.llm.plugins.modules import deckhouse_static_node
from ansible_collections.lab.llm.tests.unit.plugins.modules.test_deckhouse_static_node import CAPS, args
from tests.standins.k8s.controllers import play_caps
from tests.standins.k8s.server import KubeApiStandIn

NODE_GROUP_API = "deckhouse.io/v1"


def params(**extra: Any) -> dict[str, Any]:
    """The options as the module hands them to the runner: validated by its argument spec, defaults filled in."""
    outcome = ArgumentSpecValidator(deckhouse_static_node.argument_spec()).validate(args(**extra))
    assert outcome.error_messages == []
    return outcome.validated_parameters


def run(options: dict[str, Any], check_mode: bool = False) -> tuple[dict[str, Any], list[str]]:
    warnings: list[str] = []
    return StaticNodeRunner(options, check_mode, warnings.append).run(), warnings


def writes(api: KubeApiStandIn) -> list[tuple[str, str]]:
    return [(method, path) for method, path in api.requests if method != "GET"]


def test_wrong_options_fail_before_the_first_call_naming_every_problem(kube_api: KubeApiStandIn) -> None:
    with pytest.raises(StaticNodeError) as error:
        run(params(node_group="GPU_3090", address="gpu-3090-1.lab", ssh_port=0))
    message = str(error.value)
    assert message.startswith("deckhouse_static_node gpu-3090-1: node_group='GPU_3090': a NodeGroup name is lowercase")
    assert "; ssh_port=0: the SSHCredentials CRD allows 1 to 65535" in message
    assert "address='gpu-3090-1.lab': a StaticInstance address must be an IPv4" in message
    assert kube_api.requests == []
    # render_only is checked the same way: a render of wrong options is refused too.
    with pytest.raises(StaticNodeError, match="ssh_private_key \\(or sudo_password\\) is required"):
        run(params(ssh_private_key=None, render_only=True))
    assert kube_api.requests == []


def test_render_only_returns_the_manifests_and_calls_nothing(kube_api: KubeApiStandIn) -> None:
    result, warnings = run(params(render_only=True))
    assert kube_api.requests == []
    assert (result["changed"], warnings) == (False, [])
    assert [(m["kind"], m["metadata"]["name"]) for m in result["manifests"]] == [
        ("SSHCredentials", "gpu-3090-1-ssh"),
        ("StaticInstance", "gpu-3090-1"),
        ("NodeGroup", "gpu-rtx-3090"),
    ]
    assert result["manifests"][2]["spec"]["staticInstances"]["count"] == 1  # this VM alone
    assert "test-only-not-a-key" not in json.dumps(result)  # the key is redacted
    script = run(params(bootstrap="script", render_only=True))[0]
    assert [m["kind"] for m in script["manifests"]] == ["NodeGroup"]
    assert kube_api.requests == []


def test_check_mode_writes_nothing_and_a_second_run_changes_nothing(kube_api: KubeApiStandIn) -> None:
    play_caps(kube_api)
    predicted = run(params(), check_mode=True)[0]
    assert predicted["changed"] is True
    assert sorted(predicted["diff"]["after"]) == ["NodeGroup/gpu-rtx-3090", "SSHCredentials/gpu-3090-1-ssh",
                                                  "StaticInstance/gpu-3090-1"]  # fmt: skip
    assert predicted["phase"] == "Pending"  # not waited for in check mode
    assert writes(kube_api) and all("dryRun=All" in path for _method, path in writes(kube_api))
    assert kube_api.names(CAPS, "SSHCredentials") == []
    assert kube_api.names(CAPS, "StaticInstance") == []
    assert kube_api.names(NODE_GROUP_API, "NodeGroup") == []

    first = run(params())[0]
    assert (first["changed"], first["node_name"], first["phase"]) == (True, "gpu-3090-1", "Running")
    assert "test-only-not-a-key" not in json.dumps(first)
    written = len(writes(kube_api))
    again, warnings = run(params())
    assert again["changed"] is False, again["diff"]
    assert (again["diff"], warnings) == ({"before": {}, "after": {}}, [])
    assert run(params(), check_mode=True)[0]["changed"] is False
    stored = [path for _method, path in writes(kube_api)[written:] if "dryRun=All" not in path]
    assert all("fieldManager=lab-llm" in path for path in stored), stored  # unchanged applies, nothing else


def test_a_failed_call_names_the_object(kube_api: KubeApiStandIn) -> None:
    kube_api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "d8-cloud-instance-manager"}})
    with pytest.raises(StaticNodeError) as error:
        run(params(name="gpu-3060-1", node_group="gpu-rtx-3060", gpu_class="rtx-3060", bootstrap="script"))
    assert str(error.value) == (
        "Secret d8-cloud-instance-manager/manual-bootstrap-for-gpu-rtx-3060: "
        "not found; Deckhouse creates it for a Static NodeGroup"
    )
