# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The flow of lab.llm.deckhouse_static_node: a GPU VM joins a Deckhouse cluster as a static node, or leaves it.

Manifests come from ``deckhouse.py``; this module decides what to apply, in which order, and what to wait for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible_collections.lab.llm.plugins.module_utils.k8s import deckhouse, names, waiter
from ansible_collections.lab.llm.plugins.module_utils.k8s.client import connect
from ansible_collections.lab.llm.plugins.module_utils.k8s.exceptions import K8sError
from ansible_collections.lab.llm.plugins.module_utils.k8s.node import drain as drain_node
from ansible_collections.lab.llm.plugins.module_utils.k8s.secrets import redacted, secret_text
from ansible_collections.lab.llm.plugins.module_utils.k8s.service import K8sService

# The module's bootstrap flows: CAPS (SSHCredentials and StaticInstance, Deckhouse joins the VM over SSH), or the
# group's bootstrap script run on the VM by hand.
STATIC_INSTANCE, SCRIPT = "static_instance", "script"
BOOTSTRAP_FLOWS = (STATIC_INSTANCE, SCRIPT)
# The field manager that lowers a NodeGroup's staticInstances.count when a node leaves. Server-side apply removes the
# fields a manager applied before and leaves out of its next apply (Kubernetes docs, "Server-Side Apply", field
# management), so the count alone, applied as lab-llm (which applied the whole NodeGroup when nodes joined), would
# strip the node template, taints and GPU settings from the nodes that stay. A manager of its own owns only what it
# sets; lab-llm's next full apply of the group takes the count back (forced, as every apply here).
COUNT_FIELD_MANAGER = "lab-llm-node-count"


def input_problems(params: dict[str, Any]) -> list[str]:
    """What is wrong with the module's options beyond what its argument spec checks: values the CRDs constrain,
    and requirements that hold only for ``state=present`` with ``bootstrap=static_instance`` together."""
    problems = [deckhouse.check_node_group_name(params["node_group"]), names.subdomain_problem("name", params["name"])]
    if params["credentials_name"] is not None:
        problems.append(names.subdomain_problem("credentials_name", params["credentials_name"]))
    if params["state"] == "present" and params["gpu_class"] is not None and not params["gpu_class"].strip():
        # The argument spec requires the option (required_if); a blank value would label the nodes with nothing.
        problems.append("gpu_class is empty; it names the GPU class of the VM, for example rtx-3090")
    elif params["gpu_class"] is not None:
        # It becomes the value of the lab-llm.io/gpu-class label of the group's nodes.
        problems.append(names.label_value_problem("gpu_class", params["gpu_class"]))
    problems += names.label_problems("node_labels", params["node_labels"] or {})
    for index, taint in enumerate(params["node_taints"] or []):
        where = "node_taints[%d]" % index
        problems.append(names.label_key_problem(where, taint["key"]))
        if taint.get("value") is not None:
            problems.append(names.label_value_problem(where, taint["value"]))
    low, high = deckhouse.TIME_SLICING_PARTITIONS
    if not low <= params["time_slicing_partitions"] <= high:
        problems.append(
            "time_slicing_partitions=%s: the NodeGroup CRD allows %d to %d (spec.gpu.timeSlicing.partitionCount)"
            % (params["time_slicing_partitions"], low, high)
        )
    if not 1 <= params["ssh_port"] <= 65535:
        problems.append("ssh_port=%s: the SSHCredentials CRD allows 1 to 65535 (spec.sshPort)" % params["ssh_port"])
    if params["state"] == "present" and params["bootstrap"] == STATIC_INSTANCE:
        if not params["address"]:
            problems.append("address is required with bootstrap=static_instance")
        else:
            problems.append(deckhouse.check_address(params["address"]))
        if not params["ssh_private_key"] and not params["sudo_password"]:
            problems.append("ssh_private_key (or sudo_password) is required with bootstrap=static_instance")
    return [problem for problem in problems if problem]


class StaticNodeError(Exception):
    """The options are wrong (nothing was sent to the cluster), or a call failed or a wait timed out (the message
    names the object)."""


class StaticNodeRunner:
    """Brings one VM to ``params["state"]``, or renders its manifests (``render_only``); ``run()`` returns the module
    result.

    ``params`` are the module's options. ``warn`` shows a warning (AnsibleModule.warn): the cluster's warnings, once
    the run succeeded.
    """

    def __init__(self, params: dict[str, Any], check_mode: bool, warn: Callable[[str], None]) -> None:
        self.service: K8sService | None = None  # connected by run(), after the options passed the checks
        self.params = params
        self.check_mode = check_mode
        self.warn = warn
        self.caps_api = "deckhouse.io/%s" % params["caps_api_version"]
        self.credentials_name = params["credentials_name"] or "%s-ssh" % params["name"]
        self.changed = False
        self.diff: dict[str, dict[str, Any]] = {"before": {}, "after": {}}
        self.applied: list[dict[str, Any]] = []
        self.drained: list[str] = []

    @property
    def api(self) -> K8sService:
        if self.service is None:
            raise K8sError("no cluster connection (render only)")
        return self.service

    def run(self) -> dict[str, Any]:
        """``changed``, ``manifests`` (as applied, secrets redacted), ``evicted``, ``diff`` and the state's fields;
        with ``render_only``, ``changed`` (False) and ``manifests`` alone, and no call to the cluster.

        Raises StaticNodeError before any call when input_problems() finds the options wrong, and when a call fails
        or a wait times out.
        """
        params = self.params
        problems = input_problems(params)
        if problems:
            raise StaticNodeError("deckhouse_static_node %s: %s" % (params["name"], "; ".join(problems)))
        if params["render_only"]:
            # The count a render shows is this VM alone; applied, it is the number of StaticInstances of the group.
            return dict(changed=False, manifests=[redacted(manifest) for manifest in self.manifests(1)])
        try:
            self.service = K8sService(connect(params), check_mode=self.check_mode)
            result = self.present() if params["state"] == "present" else self.absent()
        except K8sError as error:
            raise StaticNodeError(str(error)) from None
        for warning in self.service.warnings:
            self.warn(warning)
        return dict(result, changed=self.changed, manifests=self.applied, evicted=self.drained, diff=self.diff)

    def manifests(self, count: int) -> list[dict[str, Any]]:
        """[SSHCredentials, StaticInstance, NodeGroup] (CAPS flow), or [NodeGroup] (script flow)."""
        params = self.params
        static = params["bootstrap"] == STATIC_INSTANCE
        group = deckhouse.node_group(
            params["node_group"],
            params["gpu_class"],
            count,
            params["node_labels"],
            [{key: value for key, value in taint.items() if value is not None} for taint in params["node_taints"]],
            params["gpu_sharing"],
            params["time_slicing_partitions"],
            static,
        )
        if not static:
            return [group]
        credentials = deckhouse.ssh_credentials(
            self.credentials_name,
            params["caps_api_version"],
            params["ssh_user"],
            params["ssh_private_key"] or "",
            params["ssh_port"],
            params["sudo_password"],
        )
        if not params["ssh_private_key"]:
            del credentials["spec"]["privateSSHKey"]
        instance = deckhouse.static_instance(
            params["name"], params["caps_api_version"], params["address"], self.credentials_name, params["node_group"]
        )
        return [credentials, instance, group]

    def apply(self, manifest: dict[str, Any], service: K8sService | None = None) -> dict[str, Any] | None:
        """Server-side apply ``manifest`` (as lab-llm, or through ``service``); record change, diff and manifest."""
        changed, before, after = (service or self.api).apply(manifest)
        label = "%s/%s" % (manifest["kind"], manifest["metadata"]["name"])
        if changed:
            self.changed = True
            self.diff["before"][label] = redacted(before)
            self.diff["after"][label] = redacted(after)
        self.applied.append(redacted(manifest))
        return after

    def group_count(self, including: str | None = None, excluding: str | None = None) -> int:
        """How many StaticInstances are labelled for the group, counting ``including`` in and ``excluding`` out."""
        members = {
            item["metadata"]["name"]
            for item in self.api.list(
                self.caps_api,
                "StaticInstance",
                label_selector="%s=%s" % (deckhouse.SELECTOR_LABEL, self.params["node_group"]),
            )
        }
        if including:
            members.add(including)
        members.discard(excluding)
        return len(members)

    def present(self) -> dict[str, Any]:
        params = self.params
        result: dict[str, Any] = {}
        if params["bootstrap"] == SCRIPT:
            self.apply(self.manifests(0)[0])
            if self.api.get("v1", "Node", params["name"]) is None:
                result["bootstrap_script"] = self.bootstrap_script()
            else:
                result["node_name"] = params["name"]
            return result
        credentials, instance = self.manifests(0)[:2]
        self.apply(credentials)
        self.apply(instance)
        self.apply(self.manifests(self.group_count(including=params["name"]))[2])
        if params["wait"] and not self.check_mode:
            obj = waiter.wait_for(
                self.api,
                self.caps_api,
                "StaticInstance",
                params["name"],
                None,
                waiter.static_instance_running,
                params["wait_timeout"],
            )
            node_name = deckhouse.node_name_of(obj or {}, params["name"])
            waiter.wait_for(self.api, "v1", "Node", node_name, None, waiter.node_ready, params["wait_timeout"])
            result.update(node_name=node_name, phase="Running")
        else:
            current = self.api.get(self.caps_api, "StaticInstance", params["name"]) or {}
            result["phase"] = deckhouse.static_instance_phase(current, "Pending")
        return result

    def bootstrap_script(self) -> str:
        """The bootstrap script of the group (Secret ``manual-bootstrap-for-GROUP``); in check mode, empty if absent."""
        name = "manual-bootstrap-for-%s" % self.params["node_group"]
        secret = self.api.get("v1", "Secret", name, deckhouse.BOOTSTRAP_NAMESPACE)
        if secret is None:
            if self.check_mode:
                return ""
            raise K8sError(
                "not found; Deckhouse creates it for a Static NodeGroup",
                kind="Secret",
                name=name,
                namespace=deckhouse.BOOTSTRAP_NAMESPACE,
            )
        script = secret_text(secret, "bootstrap.sh")
        if not script:
            raise K8sError(
                "has no data.bootstrap.sh", kind="Secret", name=name, namespace=deckhouse.BOOTSTRAP_NAMESPACE
            )
        return script

    def drain(self, node_name: str) -> list[str]:
        evicted = drain_node(self.api, node_name, self.params["drain_timeout"])
        if evicted:
            self.changed = True
        return evicted

    def absent(self) -> dict[str, Any]:
        params = self.params
        name = params["name"]
        if params["bootstrap"] == SCRIPT:
            self.drained = self.drain(name)
            if self.api.delete("v1", "Node", name):
                self.changed = True
                self.diff["before"]["Node/%s" % name] = {"metadata": {"name": name}}
            return {}
        instance = self.api.get(self.caps_api, "StaticInstance", name)
        if instance is not None:
            self.drained = self.drain(deckhouse.node_name_of(instance, name))
            if deckhouse.SELECTOR_LABEL in (instance["metadata"].get("labels") or {}):
                self.release(instance)
            if params["wait"] and not self.check_mode:
                waiter.wait_for(
                    self.api,
                    self.caps_api,
                    "StaticInstance",
                    name,
                    None,
                    waiter.static_instance_released,
                    params["wait_timeout"],
                )
            if self.api.delete(self.caps_api, "StaticInstance", name):
                self.changed = True
                self.diff["before"]["StaticInstance/%s" % name] = redacted(instance)
        credentials = self.api.get(self.caps_api, "SSHCredentials", self.credentials_name)
        if credentials is not None and self.api.delete(self.caps_api, "SSHCredentials", self.credentials_name):
            self.changed = True
            self.diff["before"]["SSHCredentials/%s" % self.credentials_name] = redacted(credentials)
        return {}

    def release(self, instance: dict[str, Any]) -> None:
        """The StaticInstance loses its group label and the group's count drops, so CAPS cleans the VM."""
        params = self.params
        released = deckhouse.static_instance(
            params["name"],
            params["caps_api_version"],
            instance["spec"]["address"],
            instance["spec"]["credentialsRef"]["name"],
            None,
        )
        self.apply(released)
        group = self.api.get(deckhouse.NODE_GROUP_API, "NodeGroup", params["node_group"])
        if group is not None and "staticInstances" in group.get("spec", {}):
            count = self.group_count(excluding=params["name"])
            counter = K8sService(self.api.client, check_mode=self.check_mode, field_manager=COUNT_FIELD_MANAGER)
            self.apply(deckhouse.node_group_count(params["node_group"], group["spec"], count), counter)
            self.api.warnings.extend(counter.warnings)
