"""module_utils/k8s/wait_runner.py against the Kubernetes API stand-in: a real run follows the watch until the
condition holds, check mode reads once and never watches, a namespace is used only for a namespaced kind, and a
wait that ends without the condition raises naming the object."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.lab.llm.plugins.module_utils.k8s.exceptions import WaitTimeout
from ansible_collections.lab.llm.plugins.module_utils.k8s.wait_runner import WaitRunner
from ansible_collections.lab.llm.plugins.modules import k8s_wait
from tests.standins.k8s.fixtures import later
from tests.standins.k8s.server import KubeApiStandIn


def params(**options: Any) -> dict[str, Any]:
    """The options as the module hands them to the runner: validated by its argument spec, defaults filled in."""
    outcome = ArgumentSpecValidator(k8s_wait.argument_spec()).validate(options)
    assert outcome.error_messages == []
    return outcome.validated_parameters


def node(name: str, gpus: int | None = None) -> dict[str, Any]:
    capacity = {"cpu": "16"} if gpus is None else {"cpu": "16", "nvidia.com/gpu": str(gpus)}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": {"capacity": capacity}}


def watches(kube_api: KubeApiStandIn) -> list[str]:
    return [path for _method, path in kube_api.requests if "watch=" in path]


def once_watched(kube_api: KubeApiStandIn, action: Callable[[], None], within_s: float = 10) -> None:
    """Play a controller: do `action` in the background as soon as a client watches (not before its first read)."""

    def when_watched() -> None:
        deadline = time.monotonic() + within_s
        while not watches(kube_api) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)  # the watch stream is open
        action()

    later(0, when_watched)


def test_a_run_follows_the_watch_until_the_condition_holds(kube_api: KubeApiStandIn) -> None:
    kube_api.put(node("gpu-1"))
    once_watched(kube_api, lambda: kube_api.set_status("v1", "Node", "gpu-1", node("gpu-1", gpus=2)["status"]))
    started = time.monotonic()
    result = WaitRunner(params(condition="node_gpus", name="gpu-1", gpus=2, timeout=10), False).run()
    assert time.monotonic() - started < 5  # woken by the watch event, not by the deadline
    assert result == {"changed": False, "ready": True, "state": "capacity nvidia.com/gpu=2"}
    assert watches(kube_api)
    assert [method for method, _path in kube_api.requests if method != "GET"] == []  # it never writes


def test_check_mode_reads_once_and_says_what_a_run_would_wait_for(kube_api: KubeApiStandIn) -> None:
    kube_api.put(node("gpu-1", gpus=1))
    one = WaitRunner(params(condition="node_gpus", name="gpu-1", timeout=30), True).run()
    assert one == {
        "changed": False,
        "ready": True,
        "state": "capacity nvidia.com/gpu=1",
        "msg": "check mode, not waited: a real run waits up to 30s for Node gpu-1 (node_gpus); "
        "now: capacity nvidia.com/gpu=1",
    }
    two = WaitRunner(params(condition="node_gpus", name="gpu-1", gpus=2, timeout=30), True).run()
    assert (two["ready"], two["state"]) == (False, "capacity nvidia.com/gpu=1")
    assert watches(kube_api) == []


def test_the_namespace_is_used_only_for_a_namespaced_kind(kube_api: KubeApiStandIn) -> None:
    kube_api.put(node("gpu-1"))
    result = WaitRunner(params(condition="node_ready", name="gpu-1", namespace="lab-llm", timeout=5), True).run()
    assert result["msg"].endswith("for Node gpu-1 (node_ready); now: Ready=Unknown ()"), result
    missing = WaitRunner(
        params(condition="deployment_available", name="web", namespace="lab-llm", timeout=5), True
    ).run()
    assert missing["msg"].endswith(
        "for Deployment lab-llm/web (deployment_available); now: Deployment not created yet"
    ), missing
    assert all("/namespaces/" not in path for _method, path in kube_api.requests if "/nodes" in path)


def test_a_wait_that_ends_without_the_condition_names_the_object(kube_api: KubeApiStandIn) -> None:
    kube_api.put(node("gpu-1"))
    with pytest.raises(WaitTimeout) as error:
        WaitRunner(params(condition="node_gpus", name="gpu-1", timeout=1), False).run()
    assert str(error.value) == "Node gpu-1: not ready after 1s; last seen: capacity nvidia.com/gpu=0"
