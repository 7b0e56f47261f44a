# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The flow of lab.llm.proxmox_gpu_vm: check input, clone, configure, resize, power, wait for the agent.

Every check that can fail on bad input runs before the first write.
"""

from __future__ import annotations

import random
import time
from typing import Any

from ansible_collections.lab.llm.plugins.module_utils.pve import propstring
from ansible_collections.lab.llm.plugins.module_utils.pve import vm as vms
from ansible_collections.lab.llm.plugins.module_utils.pve.client import PveClient
from ansible_collections.lab.llm.plugins.module_utils.pve.exceptions import PveApiError, PveInputError
from ansible_collections.lab.llm.plugins.module_utils.pve.mapping import check_devices, parse_entry
from ansible_collections.lab.llm.plugins.module_utils.pve.waiter import (
    guest_addresses,
    wait_for_agent,
    wait_for_task,
    wait_for_unlock,
)

ALWAYS = "always"
NEXTID_ATTEMPTS = 5


class GpuVmRunner:
    """Brings one VM to the wanted state; ``result`` is what the module returns."""

    def __init__(self, client: PveClient, params: dict[str, Any], check_mode: bool) -> None:
        self.client = client
        self.params = params
        self.check_mode = check_mode
        self.node = params["node"]
        self.tag = params["managed_tag"]
        self.result = {"changed": False, "node": self.node, "name": params["name"], "restart_pending": False}
        self.warnings: list[str] = []

    # -- checks, all before any write -------------------------------------------------------------
    def preflight(self) -> dict | None:
        """Validate the input against the cluster; return the existing managed VM (resource) or None."""
        params = self.params
        problems = vms.settings_problems(params)
        if problems:
            raise PveInputError("Proxmox would refuse these settings: " + "; ".join(problems))
        vms.validate_sshkeys((params["cloud_init"] or {}).get("sshkeys") or [])
        for index, gpu in enumerate(params["gpus"] or []):
            vms.hostpci_value(gpu)
            if gpu.get("host") and params["state"] != "absent" and not vms.raw_pci_allowed(params):
                raise PveInputError(vms.raw_pci_refusal(params, "gpus[%d] host=%s" % (index, gpu["host"])))
        if params["disk_size"]:
            vms.size_bytes(params["disk_size"])
        nodes = sorted(item["node"] for item in self.client.get("nodes"))
        if self.node not in nodes:
            raise PveInputError("node %r is not in the cluster (nodes: %s)" % (self.node, ", ".join(nodes)))
        resources = vms.find_vms(self.client)
        existing = self._existing_vm(resources)
        if params["state"] != "absent":
            self._check_gpus()
            if existing is None:
                self.template = self._template(resources)
        return existing

    def _existing_vm(self, resources: list) -> dict | None:
        vmid, name = self.params["vmid"], self.params["name"]
        if vmid is not None:
            by_id = [item for item in resources if item["vmid"] == vmid]
            if not by_id:
                return None
            found = by_id[0]
            if found.get("template") or found.get("name") != name or not vms.is_managed(self.client, found, self.tag):
                raise PveInputError(
                    "vmid %s is taken by %s %r on node %s, which this module does not manage (no tag %r or "
                    "another name); choose another vmid" % (
                        vmid, "template" if found.get("template") else "VM", found.get("name"),
                        found["node"], self.tag,
                    )
                )  # fmt: skip
        else:
            named = [item for item in resources if item.get("name") == name and not item.get("template")]
            if not named:
                return None
            if len(named) > 1:
                raise PveInputError(
                    "%d VMs are named %r (vmids %s); give vmid" % (len(named), name, [v["vmid"] for v in named])
                )
            found = named[0]
            if not vms.is_managed(self.client, found, self.tag):
                raise PveInputError(
                    "VM %r (vmid %s on node %s) exists but is not managed by this module (no tag %r)"
                    % (name, found["vmid"], found["node"], self.tag)
                )
        if found["node"] != self.node:
            raise PveInputError(
                "VM %r (vmid %s) is on node %s, not on %s; this module does not migrate VMs"
                % (name, found["vmid"], found["node"], self.node)
            )
        return found

    def _check_gpus(self) -> None:
        gpus = self.params["gpus"] or []
        if any(gpu.get("mapping") for gpu in gpus):
            mappings = {item["id"]: item for item in self.client.get("cluster/mapping/pci")}
        if any(gpu.get("host") for gpu in gpus):
            devices = [item["id"] for item in self.client.get("nodes/%s/hardware/pci" % self.node)]
        for gpu in gpus:
            if gpu.get("mapping"):
                self._check_mapping(gpu["mapping"], mappings)
            else:
                address = gpu["host"] if gpu["host"].count(":") == 2 else "0000:" + gpu["host"]
                if not any(device.startswith(address) for device in devices):
                    raise PveInputError("PCI device %s is not on node %s" % (gpu["host"], self.node))

    def _check_mapping(self, name: str, mappings: dict) -> None:
        mapping = mappings.get(name)
        if mapping is None:
            problem = "PCI mapping %r does not exist (mappings: %s)" % (name, ", ".join(sorted(mappings)) or "none")
        else:
            entries = [parse_entry(entry) for entry in mapping.get("map", [])]
            mapped_nodes = sorted({entry.get("node", "") for entry in entries})
            if self.node not in mapped_nodes:
                problem = "PCI mapping %r has no device on node %s (it maps %s)" % (
                    name, self.node, ", ".join(mapped_nodes) or "no node",
                )  # fmt: skip
            else:
                # What Proxmox checks when the VM starts (pve-guest-common PVE::Mapping::PCI::assert_valid).
                try:
                    check_devices(self.client, [e for e in entries if e.get("node") == self.node], fill=False)
                    return
                except PveInputError as exc:
                    problem = "PCI mapping %r does not match the device on node %s: %s" % (name, self.node, exc)
        if not self.check_mode:
            raise PveInputError(problem)
        # In check mode the mapping task before this one has not written anything yet.
        self.warnings.append(problem + "; assuming a proxmox_pci_mapping task before this one provides it")

    def _template(self, resources: list) -> dict:
        template = str(self.params["template"] or "")
        if not template:
            raise PveInputError("VM %r does not exist and no template to clone it from was given" % self.params["name"])
        for item in resources:
            if item.get("template") and (str(item["vmid"]) == template or item.get("name") == template):
                return item
        raise PveInputError("template %r not found in the cluster" % template)

    # -- the flow -----------------------------------------------------------------------------------
    def run(self) -> dict:
        existing = self.preflight()
        if self.params["state"] == "absent":
            self._absent(existing)
            return self.result
        if existing is None:
            vmid = self._create()
            if vmid is None:  # check mode: nothing to read back
                return self.result
        else:
            vmid = existing["vmid"]
        self.result["vmid"] = vmid
        path = "nodes/%s/qemu/%s" % (self.node, vmid)
        current = wait_for_unlock(self.client, self.node, vmid, timeout=self.params["wait_timeout"])
        wanted, surplus = vms.desired_config(self.params, current, self.tag)
        password = (self.params["cloud_init"] or {}).get("password")
        # Proxmox never returns the password (GET shows it masked): set it on create, or every run if asked.
        if password and (existing is None or self.params["update_password"] == ALWAYS):
            wanted["cipassword"] = password
        changes = vms.config_changes(current, wanted)
        self._check_raw_pci_changes(current, changes, surplus)
        status = self._status(vmid)
        self._diff(current, changes, surplus)
        if changes or surplus:
            self.result["changed"] = True
            self.result["changed_options"] = sorted(set(changes) | set(surplus))
            if not self.check_mode:
                update = dict(changes)
                if surplus:
                    update["delete"] = ",".join(surplus)
                self.client.put(path + "/config", **update)
        self._resize(path, current)
        # When the VM is to be stopped anyway, its next start applies whatever is pending.
        if status == "running" and self.params["state"] != "stopped":
            pending = (
                vms.needs_restart(set(changes) | set(surplus))
                if self.check_mode
                else vms.pending_keys(self.client, self.node, vmid)
            )
            if pending:
                self._restart_or_report(path, pending)
        self._power(path, status)
        self._report(vmid)
        return self.result

    def _check_raw_pci_changes(self, current: dict, changes: dict, surplus: list) -> None:
        """Changing or deleting a raw hostpciN is root@pam's alone too (Qemu.pm checks the old value)."""
        if vms.raw_pci_allowed(self.params):
            return
        for key in sorted(set(changes) | set(surplus)):
            old = current.get(key)
            if vms.option_family(key) == "hostpci" and old and "host" in propstring.parse(old, "host"):
                raise PveInputError(vms.raw_pci_refusal(self.params, "%s of the VM is %r" % (key, old)))

    def _create(self) -> int | None:
        self.result["changed"] = True
        self.result["created"] = True
        template = self.template
        if self.check_mode:
            self.result["diff"] = {"before": {}, "after": {"name": self.params["name"], "node": self.node}}
            return None
        clone = dict(name=self.params["name"], full=1 if self.params["full_clone"] else 0, description=vms.CLONE_MARKER)
        if template["node"] != self.node:
            clone["target"] = self.node
        if self.params["storage"] and self.params["full_clone"]:
            clone["storage"] = self.params["storage"]
        path = "nodes/%s/qemu/%s/clone" % (template["node"], template["vmid"])
        for attempt in range(NEXTID_ATTEMPTS):
            # /cluster/nextid reserves nothing: parallel runs can get the same id; the loser takes the next
            # (the race of bpg/terraform-provider-proxmox issue #1610).
            vmid = self.params["vmid"] or int(self.client.get("cluster/nextid"))
            try:
                upid = self.client.post(path, newid=vmid, **clone)
                break
            except PveApiError as exc:
                if self.params["vmid"] or "already exists" not in exc.reason or attempt == NEXTID_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0.1, 0.5))  # noqa: S311 - jitter, not a secret
        wait_for_task(self.client, upid, timeout=self.params["wait_timeout"])
        return vmid

    def _diff(self, current: dict, changes: dict, surplus: list) -> None:
        hidden = ("cipassword",)
        before = {key: current.get(key) for key in list(changes) + surplus if key not in hidden}
        after = {key: value for key, value in changes.items() if key not in hidden}
        diff = self.result.setdefault("diff", {"before": {}, "after": {}})
        diff["before"].update(before)
        diff["after"].update(after)

    def _resize(self, path: str, current: dict) -> None:
        if not self.params["disk_size"]:
            return
        size = vms.disk_size_change(current, self.params["disk"], self.params["disk_size"])
        if size is None:
            return
        self.result["changed"] = True
        self.result.setdefault("changed_options", []).append(self.params["disk"])
        if not self.check_mode:
            upid = self.client.put(path + "/resize", disk=self.params["disk"], size=size)
            if upid:
                wait_for_task(self.client, upid, timeout=self.params["wait_timeout"])

    def _status(self, vmid: int) -> str:
        return self.client.get("nodes/%s/qemu/%s/status/current" % (self.node, vmid))["status"]

    def _restart_or_report(self, path: str, pending: list) -> None:
        if self.params["allow_restart"]:
            self.result["changed"] = True
            self.result["restarted"] = True
            if not self.check_mode:
                self._stop(path)
                self._start(path)
            return
        self.result["restart_pending"] = True
        self.result["pending_options"] = pending
        self.warnings.append(
            "VM %s on node %s must be restarted for %s to take effect; set allow_restart=true to let the "
            "module do it" % (self.params["name"], self.node, ", ".join(pending))
        )

    def _power(self, path: str, status: str) -> None:
        state = self.params["state"]
        if self.result.get("restarted"):
            return
        if state == "started" and status != "running":
            self.result["changed"] = True
            if not self.check_mode:
                self._start(path)
        elif state == "stopped" and status == "running":
            self.result["changed"] = True
            if not self.check_mode:
                self._stop(path)

    def _start(self, path: str) -> None:
        wait_for_task(self.client, self.client.post(path + "/status/start"), timeout=self.params["wait_timeout"])

    def _stop(self, path: str) -> None:
        # A clean ACPI shutdown first; forceStop turns it into a stop when the guest ignores it.
        upid = self.client.post(path + "/status/shutdown", timeout=self.params["shutdown_timeout"], forceStop=1)
        wait_for_task(self.client, upid, timeout=self.params["shutdown_timeout"] + self.params["wait_timeout"])

    def _report(self, vmid: int) -> None:
        if self.check_mode:
            return
        self.result["status"] = self._status(vmid)
        self.result["config"] = {
            key: value
            for key, value in self.client.get("nodes/%s/qemu/%s/config" % (self.node, vmid)).items()
            if key != "cipassword"
        }
        if self.params["wait_for_agent"] and self.result["status"] == "running":
            interfaces = wait_for_agent(self.client, self.node, vmid, timeout=self.params["agent_timeout"])
            self.result["ip_addresses"] = guest_addresses(interfaces)

    def _absent(self, existing: dict | None) -> None:
        if existing is None:
            return
        self.result.update(
            changed=True, vmid=existing["vmid"], diff={"before": {"vmid": existing["vmid"]}, "after": {}}
        )
        if self.check_mode:
            return
        path = "nodes/%s/qemu/%s" % (self.node, existing["vmid"])
        if self._status(existing["vmid"]) == "running":
            wait_for_task(self.client, self.client.post(path + "/status/stop"), timeout=self.params["wait_timeout"])
        upid = self.client.delete(path, purge=1, **{"destroy-unreferenced-disks": 1})
        wait_for_task(self.client, upid, timeout=self.params["wait_timeout"])
