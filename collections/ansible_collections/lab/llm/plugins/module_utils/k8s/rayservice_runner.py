# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The flow of lab.llm.rayservice: render the RayService, check it against the GPU budget, apply it (or delete it),
wait until its Serve application runs.

The manifest comes from ``rayservice.py``, KubeRay's rules for a second RayCluster from ``upgrade.py``. Everything
that can refuse the input (rendering, the budget) runs before the first write, in check mode too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible_collections.lab.llm.plugins.module_utils.k8s import rayservice, upgrade, waiter
from ansible_collections.lab.llm.plugins.module_utils.k8s.client import connect
from ansible_collections.lab.llm.plugins.module_utils.k8s.exceptions import K8sError
from ansible_collections.lab.llm.plugins.module_utils.k8s.service import K8sService

API_VERSION = "ray.io/v1"
# What the RayService takes of a fit plan (lab.llm.llm_fit_plan's result); the rest of the plan is ignored.
FIT_PLAN_KEYS = ("engine", "engine_config", "worker_groups", "ray_placement_bundles")


class RayServiceError(Exception):
    """The RayService cannot be rendered, does not fit the GPU budget, or a call failed; ``result`` holds the
    fields the module returns with the failure (none when nothing was sent to the cluster yet)."""

    def __init__(self, message: str, **result: Any) -> None:
        super().__init__(message)
        self.result = result


class RayServiceRunner:
    """Brings one RayService to ``params["state"]``; ``run()`` returns the module result.

    ``params`` are the module's options (its ``fit_plan`` is cut to FIT_PLAN_KEYS in place). ``warn`` shows a
    warning as it comes (AnsibleModule.warn): a budget the change exceeds with ``gpu_budget_check=warn``, then,
    once the run succeeded, the cluster's warnings.
    """

    def __init__(self, params: dict[str, Any], check_mode: bool, warn: Callable[[str], None]) -> None:
        self.params = params
        self.check_mode = check_mode
        self.warn = warn
        self.ref = "RayService %s/%s" % (params["namespace"], params["name"])

    def run(self) -> dict[str, Any]:
        """``changed``, ``manifest`` (None for ``state=absent``), ``serve_service``, ``diff`` and, when waited for,
        ``ray_cluster`` and ``application_status``. Raises RayServiceError."""
        params = self.params
        manifest = self.render()
        result: dict[str, Any] = dict(
            changed=False, manifest=manifest, serve_service=rayservice.serve_service_name(params["name"])
        )
        if params["render_only"]:
            return result
        try:
            service = K8sService(connect(params), check_mode=self.check_mode)
            if params["state"] == "absent":
                before = service.get(API_VERSION, "RayService", params["name"], params["namespace"])
                result["changed"] = service.delete(API_VERSION, "RayService", params["name"], params["namespace"])
                result["diff"] = {"before": before or {}, "after": {}}
                return result
            if manifest is None:  # state=present rendered it; render_only and state=absent have returned
                raise AssertionError("no manifest rendered for state=present")
            if params["gpu_budget"] is not None:
                self.check_gpu_budget(K8sService(service.client, check_mode=True), manifest)
            changed, before, after = service.apply(manifest)
            result.update(changed=changed, diff={"before": before or {}, "after": after})
            if params["wait"] and not self.check_mode:
                result.update(self.wait(service))
        except K8sError as error:
            raise RayServiceError(str(error), **result) from None
        for warning in service.warnings:
            self.warn(warning)
        return result

    def render(self) -> dict[str, Any] | None:
        """The RayService manifest for ``state=present``, None for ``state=absent``; RayServiceError naming the
        RayService and the bad value when the options cannot make one."""
        params = self.params
        if params["state"] != "present":
            return None
        if params["fit_plan"] is not None:
            params["fit_plan"] = {key: value for key, value in params["fit_plan"].items() if key in FIT_PLAN_KEYS}
        try:
            return rayservice.render(params)
        except rayservice.RenderError as error:
            raise RayServiceError("%s: %s" % (self.ref, error)) from None

    def check_gpu_budget(self, dry_run: K8sService, manifest: dict[str, Any]) -> None:
        """Refuse (or warn about) a RayService the GPU budget cannot run, before anything is written.

        The stored object and the dry-run result both carry the server's defaults, so comparing them tells what
        KubeRay will see change (see upgrade.py for its rules).
        """
        before, after = dry_run.apply(manifest)[1:]
        spec_after = (after or manifest)["spec"]
        problems = upgrade.budget_problems(
            before.get("spec") if before else None, spec_after, self.params["gpu_budget"]
        )
        if not problems:
            return
        second = before and upgrade.cluster_change(before["spec"], spec_after) == upgrade.NEW_CLUSTER
        message = "%s: %s cannot be scheduled with the GPUs the cluster has (%s)%s" % (
            self.ref,
            "this change makes KubeRay start a second RayCluster beside the serving one, which"
            if second
            else "the RayService",
            "; ".join(problems),
            "; free GPUs, or take the change with downtime (state=absent, then apply)"
            " or keep the cluster (engine_change_upgrade=in_place)"
            if second
            else "",
        )
        if self.params["gpu_budget_check"] == "fail":
            raise RayServiceError(message)
        self.warn(message)

    def wait(self, service: K8sService) -> dict[str, Any]:
        """Waits until the application is RUNNING on the active RayCluster with no upgrade pending; returns
        ``ray_cluster`` and ``application_status``. Raises WaitTimeout/WaitFailed (K8sError)."""
        params = self.params
        obj = waiter.wait_for(
            service,
            API_VERSION,
            "RayService",
            params["name"],
            params["namespace"],
            waiter.rayservice_running(params["app_name"]),
            params["wait_timeout"],
        )
        if obj is None:  # rayservice_running is done only on a RayService that exists
            raise AssertionError("the wait ended without a RayService")
        active = obj["status"]["activeServiceStatus"]
        return dict(
            ray_cluster=active.get("rayClusterName"),
            application_status=active["applicationStatuses"][params["app_name"]]["status"],
        )
