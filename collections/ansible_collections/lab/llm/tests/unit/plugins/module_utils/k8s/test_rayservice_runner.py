"""module_utils/k8s/rayservice_runner.py against the Kubernetes API stand-in with KubeRay played by its controller:
input refused before the first call, the GPU budget before the first write, check mode stores nothing, a second
run changes nothing, and a failed call returns what the run knew."""

from __future__ import annotations

from typing import Any

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.lab.llm.plugins.module_utils.k8s.rayservice_runner import (
    FIT_PLAN_KEYS,
    RayServiceError,
    RayServiceRunner,
)
from ansible_collections.lab.llm.plugins.modules import rayservice
from ansible_collections.lab.llm.tests.unit.plugins.modules.test_rayservice import RAY, args, with_namespace
from tests.standins.k8s.controllers import play_kuberay
from tests.standins.k8s.server import KubeApiStandIn

TWO_3090 = dict(
    engine={"model": "/models/m", "served_model_name": "m", "pipeline_parallel_size": 2},
    worker_groups=[{"gpu_class": "rtx-3090", "replicas": 2}],
)


def params(**extra: Any) -> dict[str, Any]:
    """The options as the module hands them to the runner: validated by its argument spec, defaults filled in."""
    outcome = ArgumentSpecValidator(rayservice.argument_spec()).validate(args(**extra))
    assert outcome.error_messages == []
    return outcome.validated_parameters


def run(options: dict[str, Any], check_mode: bool = False) -> tuple[dict[str, Any], list[str]]:
    warnings: list[str] = []
    return RayServiceRunner(options, check_mode, warnings.append).run(), warnings


def writes(api: KubeApiStandIn) -> list[tuple[str, str]]:
    return [(method, path) for method, path in api.requests if method != "GET"]


def test_options_it_cannot_render_fail_before_any_call(kube_api: KubeApiStandIn) -> None:
    options = params(engine={"model": "/models/m", "tensor_parallel_size": 4, "pipeline_parallel_size": 2})
    with pytest.raises(RayServiceError) as error:
        run(options)
    assert str(error.value).startswith("RayService lab-llm/lab-llm: engine tensor_parallel_size x ")
    assert error.value.result == {}
    assert kube_api.requests == []


def test_check_mode_stores_nothing_and_a_second_run_changes_nothing(kube_api: KubeApiStandIn) -> None:
    with_namespace(kube_api)
    play_kuberay(kube_api)
    predicted = run(params(), check_mode=True)[0]
    assert predicted["changed"] is True
    assert "application_status" not in predicted  # nothing to wait for
    assert kube_api.get(RAY, "RayService", "lab-llm", "lab-llm") is None
    assert all("dryRun=All" in path for _method, path in writes(kube_api))

    first = run(params())[0]
    assert (first["changed"], first["application_status"]) == (True, "RUNNING")
    assert first["manifest"]["spec"] == predicted["manifest"]["spec"]
    again, warnings = run(params())
    assert again["changed"] is False
    assert (again["diff"]["before"]["spec"], warnings) == (again["diff"]["after"]["spec"], [])


def test_a_budget_the_change_exceeds_fails_before_the_first_write_or_warns(kube_api: KubeApiStandIn) -> None:
    with_namespace(kube_api)
    play_kuberay(kube_api)
    run(params(gpu_budget={"rtx-3090": 3}, **TWO_3090))
    stored = kube_api.get(RAY, "RayService", "lab-llm", "lab-llm")
    written = len(writes(kube_api))
    new_image = params(gpu_budget={"rtx-3090": 3}, image="registry.example.org/lab-llm/serve:0.2.0", **TWO_3090)
    with pytest.raises(RayServiceError, match="second RayCluster") as error:
        run(new_image)
    assert error.value.result == {}
    assert [path for _method, path in writes(kube_api)[written:] if "dryRun=All" not in path] == []
    assert kube_api.get(RAY, "RayService", "lab-llm", "lab-llm")["spec"] == stored["spec"]

    result, warnings = run(dict(new_image, gpu_budget_check="warn", wait=False))
    assert result["changed"] is True
    assert len(warnings) == 1
    assert warnings[0].startswith("RayService lab-llm/lab-llm: this change makes KubeRay start a second RayCluster")


def test_only_the_fit_plans_own_keys_are_kept(kube_api: KubeApiStandIn) -> None:
    plan = {"engine_config": {"model": "/models/m"}, "worker_groups": [{"gpu_class": "rtx-3090", "replicas": 4}]}
    options = params(fit_plan={**plan, "kv_cache_tokens": 1, "reasons": []}, render_only=True)
    result = run(options)[0]
    assert sorted(options["fit_plan"]) == sorted(plan)
    assert set(options["fit_plan"]) <= set(FIT_PLAN_KEYS)
    assert result["manifest"]["kind"] == "RayService"
    assert kube_api.requests == []


def test_a_failed_call_returns_what_the_run_knew(kube_api: KubeApiStandIn) -> None:
    with pytest.raises(RayServiceError) as error:
        run(params())
    assert str(error.value) == 'RayService lab-llm/lab-llm: not found (HTTP 404): namespaces "lab-llm" not found'
    assert (error.value.result["changed"], error.value.result["serve_service"]) == (False, "lab-llm-serve-svc")
    assert error.value.result["manifest"]["kind"] == "RayService"


def test_absent_deletes_once(kube_api: KubeApiStandIn) -> None:
    with_namespace(kube_api)
    play_kuberay(kube_api)
    run(params())
    gone = run(params(state="absent"))[0]
    assert (gone["changed"], gone["manifest"], gone["diff"]["after"]) == (True, None, {})
    assert kube_api.get(RAY, "RayService", "lab-llm", "lab-llm") is None
    assert run(params(state="absent"))[0]["changed"] is False
