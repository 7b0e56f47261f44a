"""State and behaviour of the Proxmox VE stand-in: nodes, PCI devices, storages, VMs, mappings, tasks.

Handlers receive parameters already checked against the API schema (schema.py) and return the value
that goes into ``{"data": ...}``; they raise ApiError with the status and message Proxmox uses.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field

from tests.standins.pve import rules
from tests.standins.pve.rules import ApiError

# Options qemu-server changes on a running VM without a restart ("fast plug" options and the
# cloud-init options, which only regenerate the cloud-init drive); the hotplug features below add
# net/disk/memory/cpu. Everything else (hostpci, machine, bios, cpu, cores, balloon, ...) stays pending.
FAST_PLUG = {"name", "description", "onboot", "tags", "protection", "startup", "hookscript", "hotplug"}
CLOUD_INIT = {"ciuser", "cipassword", "sshkeys", "nameserver", "searchdomain", "citype", "ciupgrade"}
HOTPLUG_FEATURES = {"network": ("net",), "disk": ("scsi", "virtio", "sata"), "memory": ("memory",), "cpu": ("vcpus",)}
DEFAULT_HOTPLUG = "network,disk,usb"
PASSWORD_MASK = "**********"


@dataclass
class Vm:
    vmid: int
    node: str
    config: dict
    pending: dict = field(default_factory=dict)
    pending_delete: set = field(default_factory=set)
    status: str = "stopped"
    started_at: float = 0.0

    @property
    def template(self) -> bool:
        return bool(self.config.get("template"))

    def merged_config(self) -> dict:
        merged = dict(self.config)
        merged.update(self.pending)
        for key in self.pending_delete:
            merged.pop(key, None)
        return merged


@dataclass
class Task:
    upid: str
    node: str
    kind: str
    vmid: str
    user: str
    starttime: int
    pid: int
    pstart: int
    log: list = field(default_factory=list)
    status: str = "running"
    exitstatus: str | None = None


@dataclass
class Fault:
    """Make the next task of ``kind`` (e.g. ``qmclone``) fail with ``message`` once ``after`` seconds passed."""

    kind: str
    message: str


class Cluster:
    """One Proxmox VE cluster's state; thread-safe (the HTTP server is threaded, tasks finish on timers)."""

    def __init__(self, task_seconds: float = 0.3, agent_seconds: float = 0.5) -> None:
        self.lock = threading.RLock()
        self.nodes: dict[str, dict] = {}
        self.vms: dict[int, Vm] = {}
        self.mappings: dict[str, dict] = {}
        self.tasks: dict[str, Task] = {}
        self.faults: list[Fault] = []
        self.task_seconds = task_seconds
        self.agent_seconds = agent_seconds
        self.requests: list[tuple[str, str]] = []
        self._pids = itertools.count(4000)
        self._disk_ids = itertools.count(1)

    # -- setting up a scenario (tests call these directly) --------------------------------------------
    def add_node(self, name: str, pci_devices: list | None = None, storages: dict | None = None) -> None:
        with self.lock:
            self.nodes[name] = {
                "pci": pci_devices or [],
                "storages": storages or {"local-lvm": {"shared": 0, "type": "lvmthin"}},
            }

    def add_vm(self, vmid: int, node: str, config: dict, status: str = "stopped") -> Vm:
        with self.lock:
            vm = Vm(vmid, node, dict(config), status=status, started_at=time.time())
            self.vms[vmid] = vm
            return vm

    def fail_next_task(self, kind: str, message: str) -> None:
        with self.lock:
            self.faults.append(Fault(kind, message))

    def writes(self) -> list[tuple[str, str]]:
        """Requests that change state (method, path) in the order they came."""
        with self.lock:
            return [(method, path) for method, path in self.requests if method != "GET"]

    # -- helpers ---------------------------------------------------------------------------------------
    def node(self, name: str) -> dict:
        if name not in self.nodes:
            # What pveproxy answers for a node name it cannot resolve in the cluster.
            raise ApiError(595, f"hostname lookup '{name}' failed - failed to get address info for: {name}")
        return self.nodes[name]

    def vm(self, node: str, vmid: int) -> Vm:
        self.node(node)
        vm = self.vms.get(vmid)
        if vm is None or vm.node != node:
            raise ApiError(500, f"Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist")
        return vm

    @staticmethod
    def check_unlocked(vm: Vm, skiplock: bool = False) -> None:
        lock = vm.config.get("lock")
        if lock and not skiplock:
            raise ApiError(500, f"VM {vm.vmid} is locked ({lock})")

    def start_task(self, node: str, kind: str, vmid, user: str, work, log=None, on_failure=None) -> str:
        """Create a task that runs ``work()`` after task_seconds on a timer; a fault or ApiError fails it."""
        now = int(time.time())
        pid = next(self._pids)
        upid = f"UPID:{node}:{pid:08X}:{pid * 7:08X}:{now:08X}:{kind}:{vmid}:{user}:"
        task = Task(upid, node, kind, str(vmid), user, now, pid, pid * 7, log=list(log or []))
        fault = next((fault for fault in self.faults if fault.kind == kind), None)
        if fault is not None:
            self.faults.remove(fault)
        self.tasks[upid] = task

        def finish() -> None:
            with self.lock:
                try:
                    if fault is not None:
                        raise ApiError(500, fault.message)
                    work()
                    task.log.append("TASK OK")
                    task.exitstatus = "OK"
                except ApiError as exc:
                    if on_failure is not None:
                        on_failure()
                    task.log.append(f"TASK ERROR: {exc.message}")
                    task.exitstatus = exc.message
                task.status = "stopped"

        timer = threading.Timer(self.task_seconds, finish)
        timer.daemon = True
        timer.start()
        return upid

    def allocate_disk(self, vmid: int, node: str, spec: str, size: str) -> str:
        """``local-lvm:1,efitype=4m`` (STORAGE:SIZE) -> ``local-lvm:vm-101-disk-1,efitype=4m,size=SIZE``."""
        storage, rest = spec.split(":", 1)
        if storage not in self.node(node)["storages"]:
            raise ApiError(500, f"storage '{storage}' does not exist on node '{node}'")
        options = rest.split(",", 1)[1:] if "," in rest else []
        volume = f"{storage}:vm-{vmid}-disk-{next(self._disk_ids)}"
        return ",".join([volume, *options, f"size={size}"])

    @staticmethod
    def digest(config: dict) -> str:
        return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()  # noqa: S324 - as Proxmox

    # -- /cluster ------------------------------------------------------------------------------------------
    def resources(self, params: dict) -> list:
        kind = params.get("type")
        result = []
        if kind in (None, "node"):
            result += [{"id": f"node/{name}", "type": "node", "node": name, "status": "online"} for name in self.nodes]
        if kind in (None, "vm"):
            for vm in self.vms.values():
                item = {
                    "id": f"qemu/{vm.vmid}",
                    "type": "qemu",
                    "vmid": vm.vmid,
                    "node": vm.node,
                    "name": vm.config.get("name", f"VM {vm.vmid}"),
                    "status": vm.status,
                    "template": 1 if vm.template else 0,
                    "maxmem": int(str(vm.config.get("memory", 512)).split(",")[0].replace("current=", "")) * 1024**2,
                }
                if vm.config.get("tags"):
                    item["tags"] = vm.config["tags"]
                if vm.config.get("lock"):
                    item["lock"] = vm.config["lock"]
                result.append(item)
        if kind in (None, "storage"):
            for name, node in self.nodes.items():
                for storage, info in node["storages"].items():
                    result.append(
                        {"id": f"storage/{name}/{storage}", "type": "storage", "node": name,
                         "storage": storage, "shared": info["shared"], "status": "available"}
                    )  # fmt: skip
        return result

    def nextid(self, params: dict) -> str:
        if "vmid" in params:
            if params["vmid"] in self.vms:
                raise ApiError(
                    400, "Parameter verification failed.", {"vmid": "VM {} already exists".format(params["vmid"])}
                )
            return str(params["vmid"])
        vmid = 100
        while vmid in self.vms:
            vmid += 1
        return str(vmid)  # the API returns the id as a string

    def mapping_list(self, params: dict) -> list:
        return [{"id": name, "description": m.get("description", ""), "map": list(m["map"]), "type": "pci"}
                for name, m in sorted(self.mappings.items())]  # fmt: skip

    def mapping_get(self, params: dict) -> dict:
        mapping = self.mappings.get(params["id"])
        if mapping is None:
            raise ApiError(500, "mapping '{}' not found".format(params["id"]))
        return dict(copy.deepcopy(mapping), id=params["id"], type="pci", digest=self.digest(mapping))

    def mapping_create(self, params: dict) -> None:
        if params["id"] in self.mappings:
            raise ApiError(500, "create hardware mapping failed: pci ID '{}' already defined".format(params["id"]))
        self.mappings[params["id"]] = {"map": list(params["map"]), **_opt(params, "description")}

    def mapping_update(self, params: dict) -> None:
        mapping = self.mappings.get(params["id"])
        if mapping is None:
            raise ApiError(500, "update hardware mapping failed: pci ID '{}' does not exist".format(params["id"]))
        if "digest" in params and params["digest"] != self.digest(mapping):
            raise ApiError(500, "detected modified configuration - file changed by other user? Try again.")
        for key in re.split(r"[,; ]", params.get("delete", "")):
            mapping.pop(key, None)
        if "map" in params:
            mapping["map"] = list(params["map"])
        if "description" in params:
            mapping["description"] = params["description"]

    def mapping_delete(self, params: dict) -> None:
        # pve-manager Mapping/PCI.pm delete: removing a mapping that is not there is no error.
        self.mappings.pop(params["id"], None)

    # -- /nodes ----------------------------------------------------------------------------------------
    def node_list(self, params: dict) -> list:
        return [
            {"node": name, "status": "online", "maxcpu": 32, "maxmem": 256 * 1024**3} for name in sorted(self.nodes)
        ]

    def node_status(self, params: dict) -> dict:
        self.node(params["node"])
        gib = 1024**3
        return {
            "pveversion": "pve-manager/8.4.1/2a5fa54a8503f96d", "uptime": 1000, "cpu": 0.02,
            "cpuinfo": {"cores": 16, "cpus": 32, "model": "AMD EPYC 7302P 16-Core Processor", "sockets": 1},
            "boot-info": {"mode": "efi", "secureboot": 0},
            "current-kernel": {"machine": "x86_64", "release": "6.8.12-9-pve", "sysname": "Linux",
                               "version": "#1 SMP PREEMPT_DYNAMIC PMX 6.8.12-9"},
            "loadavg": ["0.10", "0.12", "0.09"],
            "memory": {"available": 200 * gib, "free": 190 * gib, "total": 256 * gib, "used": 56 * gib},
            "rootfs": {"avail": 80 * gib, "free": 85 * gib, "total": 100 * gib, "used": 15 * gib},
        }  # fmt: skip

    def storage_list(self, params: dict) -> list:
        node = self.node(params["node"])
        return [{"storage": name, "type": info["type"], "shared": info["shared"], "active": 1, "enabled": 1,
                 "content": "images,rootdir"}
                for name, info in sorted(node["storages"].items())]  # fmt: skip

    def pci_list(self, params: dict) -> list:
        devices = self.node(params["node"])["pci"]
        blacklist = params.get("pci-class-blacklist", "05;06;0b")
        banned = tuple("0x" + prefix for prefix in re.split(r"[,; ]", blacklist) if prefix)
        return [dict(device) for device in devices if not (banned and device["class"].startswith(banned))]

    def pci_get(self, params: dict) -> list:
        self.node(params["node"])
        return [{"method": "mdev"}]

    # -- /nodes/{node}/qemu ------------------------------------------------------------------------------
    def vm_list(self, params: dict) -> list:
        self.node(params["node"])
        return [{"vmid": vm.vmid, "name": vm.config.get("name", ""), "status": vm.status,
                 **({"template": 1} if vm.template else {})}
                for vm in self.vms.values() if vm.node == params["node"]]  # fmt: skip

    def vm_create(self, params: dict, user: str) -> str:
        node, vmid = params.pop("node"), params.pop("vmid")
        self.node(node)
        if vmid in self.vms:
            raise ApiError(500, f"unable to create VM {vmid}: config file already exists")
        rules.check_config_update(user, {}, params, [])  # Qemu.pm check_vm_create_hostpci_perm
        config = {key: value for key, value in params.items() if key not in ("start", "storage")}
        self.vms[vmid] = Vm(vmid, node, config)
        self.vms[vmid].config["lock"] = "create"

        def work() -> None:
            self.vms[vmid].config.pop("lock", None)

        return self.start_task(node, "qmcreate", vmid, user, work)

    def vm_index(self, params: dict) -> list:
        self.vm(params["node"], params["vmid"])
        return [{"subdir": name} for name in ("config", "status", "clone", "resize", "agent", "template")]

    def vm_destroy(self, params: dict, user: str) -> str:
        vm = self.vm(params["node"], params["vmid"])
        self.check_unlocked(vm, params.get("skiplock", 0))
        if vm.status == "running":
            raise ApiError(500, f"VM {vm.vmid} is running - destroy failed")

        def work() -> None:
            self.vms.pop(vm.vmid, None)

        return self.start_task(vm.node, "qmdestroy", vm.vmid, user, work)

    def vm_config(self, params: dict) -> dict:
        vm = self.vm(params["node"], params["vmid"])
        config = dict(vm.config) if params.get("current") else vm.merged_config()
        if "cipassword" in config:
            config["cipassword"] = PASSWORD_MASK
        config["digest"] = self.digest(vm.config)
        return config

    def vm_update(self, params: dict, user: str, asynchronous: bool):
        node, vmid = params.pop("node"), params.pop("vmid")
        vm = self.vm(node, vmid)
        self.check_unlocked(vm, params.pop("skiplock", 0))
        digest = params.pop("digest", None)
        if digest is not None and digest != self.digest(vm.config):
            raise ApiError(500, "detected modified configuration - file changed by other user? Try again.")
        deletes = [key for key in re.split(r"[,; ]", params.pop("delete", "")) if key]
        for key in ("force", "revert", "background_delay"):
            params.pop(key, None)
        both = set(deletes) & set(params)
        if both:
            raise ApiError(500, "cannot set and delete the same option: {}".format(", ".join(sorted(both))))
        try:  # Qemu.pm update_vm_api: in the request (PUT) or in its qmconfig task (POST)
            rules.check_config_update(user, vm.config, params, [k for k in deletes if k in vm.merged_config()])
        except ApiError as error:
            if not asynchronous or error.status != 500:
                raise
            refusal = error

            def refuse() -> None:
                raise refusal

            return self.start_task(node, "qmconfig", vmid, user, refuse)
        for key, value in list(params.items()):
            if key == "efidisk0" or (re.match(r"^(scsi|virtio|sata)\d+$", key) and re.match(r"^[^:]+:\d+(,|$)", value)):
                params[key] = self.allocate_disk(
                    vmid, node, value, "4M" if key == "efidisk0" else value.split(":")[1] + "G"
                )
        for key, value in list(params.items()):
            if re.match(r"^net\d+$", key) and "macaddr=" not in value and "=" not in value.split(",")[0]:
                # qemu-server generates a MAC for a NIC given without one: model=MAC from then on.
                model, _, rest = value.partition(",")
                mac = f"BC:24:11:{vmid // 65536 % 256:02X}:{vmid // 256 % 256:02X}:{vmid % 256:02X}"
                params[key] = f"{model}={mac}" + ("," + rest if rest else "")
        live = vm.status == "running"
        hotplug = str(vm.merged_config().get("hotplug", DEFAULT_HOTPLUG)).split(",")
        for key, value in params.items():
            if not live or self._hotpluggable(vm, key, hotplug, params):
                vm.config[key] = value
                vm.pending.pop(key, None)
            else:
                vm.pending[key] = value
            vm.pending_delete.discard(key)
        for key in deletes:
            if not live or self._hotpluggable(vm, key, hotplug, params):
                vm.config.pop(key, None)
                vm.pending.pop(key, None)
            else:
                vm.pending_delete.add(key)
        if asynchronous:
            return self.start_task(node, "qmconfig", vmid, user, lambda: None)
        return None

    @staticmethod
    def _hotpluggable(vm: Vm, key: str, hotplug: list, params: dict) -> bool:
        if key in FAST_PLUG or key in CLOUD_INIT or re.match(r"^ipconfig\d+$", key):
            return True
        family = re.sub(r"\d+$", "", key)
        if key == "memory":
            # Memory hotplug needs NUMA (qemu-server: "NUMA needs to be enabled for memory hotplug").
            return "memory" in hotplug and bool(params.get("numa", vm.config.get("numa")))
        return any(family in families for feature, families in HOTPLUG_FEATURES.items() if feature in hotplug)

    def vm_resize(self, params: dict, user: str) -> str:
        vm = self.vm(params["node"], params["vmid"])
        self.check_unlocked(vm, params.get("skiplock", 0))
        disk = params["disk"]
        if disk not in vm.config:
            raise ApiError(500, f"disk '{disk}' does not exist")
        current = _size_bytes(
            dict(p.split("=", 1) for p in vm.config[disk].split(",")[1:] if "=" in p).get("size", "0")
        )
        size = params["size"]
        wanted = current + _size_bytes(size[1:]) if size.startswith("+") else _size_bytes(size)
        if wanted < current:
            raise ApiError(500, "shrinking disks is not supported")

        def work() -> None:
            parts = [part for part in vm.config[disk].split(",") if not part.startswith("size=")]
            vm.config[disk] = ",".join([*parts, f"size={wanted // 1024**3}G"])

        return self.start_task(vm.node, "resize", vm.vmid, user, work)

    def vm_status(self, params: dict) -> dict:
        vm = self.vm(params["node"], params["vmid"])
        config = vm.merged_config()
        status = {"vmid": vm.vmid, "name": config.get("name", ""), "status": vm.status, "qmpstatus": vm.status,
                  "ha": {"managed": 0}}  # fmt: skip
        if str(config.get("agent", "0")).split(",")[0] in ("1", "enabled=1"):
            status["agent"] = 1
        if vm.status == "running":
            status["uptime"] = int(time.time() - vm.started_at)
        if vm.config.get("lock"):
            status["lock"] = vm.config["lock"]
        return status

    def vm_start(self, params: dict, user: str) -> str:
        vm = self.vm(params["node"], params["vmid"])
        self.check_unlocked(vm, params.get("skiplock", 0))
        if vm.template:
            raise ApiError(500, "you can't start a vm if it's a template")
        if vm.status == "running":
            raise ApiError(500, f"VM {vm.vmid} already running")

        def work() -> None:
            config = vm.merged_config()
            self._check_start(vm, config)
            vm.config, vm.pending, vm.pending_delete = config, {}, set()
            vm.status, vm.started_at = "running", time.time()

        return self.start_task(vm.node, "qmstart", vm.vmid, user, work)

    def _check_start(self, vm: Vm, config: dict) -> None:
        """What qemu-server checks for passthrough at start (rules.hostpci_devices_at_start), and that no
        device is in use by another running VM of the node (PCI.pm reserve_pci_usage)."""
        devices = self.nodes[vm.node]["pci"]
        chosen = rules.hostpci_devices_at_start(vm.node, config, self.mappings, devices)
        for other in self.vms.values():
            if other is vm or other.node != vm.node or other.status != "running":
                continue
            try:
                theirs = rules.hostpci_devices_at_start(other.node, other.config, self.mappings, devices)
            except ApiError:
                continue  # its hardware changed since it started; it still holds what it had
            for pci_id in sorted(
                {i for ids in chosen.values() for i in ids} & {i for ids in theirs.values() for i in ids}
            ):
                raise ApiError(500, f"PCI device '{pci_id}' already in use by VMID '{other.vmid}'")

    def vm_stop(self, params: dict, user: str, kind: str) -> str:
        vm = self.vm(params["node"], params["vmid"])
        self.check_unlocked(vm, params.get("skiplock", 0))

        def work() -> None:
            vm.status = "stopped"

        return self.start_task(vm.node, kind, vm.vmid, user, work)

    def vm_reboot(self, params: dict, user: str) -> str:
        vm = self.vm(params["node"], params["vmid"])
        if vm.status != "running":
            raise ApiError(500, f"VM {vm.vmid} not running")

        def work() -> None:
            config = vm.merged_config()
            self._check_start(vm, config)
            vm.config, vm.pending, vm.pending_delete = config, {}, set()
            vm.started_at = time.time()

        return self.start_task(vm.node, "qmreboot", vm.vmid, user, work)

    def vm_clone(self, params: dict, user: str) -> str:
        source = self.vm(params["node"], params["vmid"])
        newid = params["newid"]
        target = params.get("target", source.node)
        self.node(target)
        rules.check_mapping_access(user, source.config)  # Qemu.pm clone_vm, before the worker
        if newid in self.vms:
            raise ApiError(500, f"unable to create VM {newid}: config file already exists")
        full = params.get("full", 0 if source.template else 1)
        if not full and not source.template:
            raise ApiError(500, "Linked clone feature is not supported for a VM that is not a template")
        disks = {
            key: value for key, value in source.config.items() if re.match(r"^(scsi|virtio|sata|efidisk)\d+$", key)
        }
        storages = self.nodes[source.node]["storages"]
        if target != source.node:
            for key, value in disks.items():
                storage = value.split(":")[0]
                if not storages.get(storage, {}).get("shared"):
                    raise ApiError(500, f"Can't clone to node '{target}': {key} uses local storage '{storage}'")
        if "storage" in params and params["storage"] not in self.nodes[target]["storages"]:
            raise ApiError(500, "storage '{}' does not exist".format(params["storage"]))
        config = {key: value for key, value in source.config.items() if key not in ("template", "lock")}
        for key, value in disks.items():
            volume, _, rest = value.partition(",")
            storage = params.get("storage", volume.split(":")[0])
            config[key] = f"{storage}:vm-{newid}-disk-{next(self._disk_ids)}" + ("," + rest if rest else "")
        for key in ("name", "description"):
            if key in params:
                config[key] = params[key]
        config["lock"] = "clone"
        clone = Vm(newid, target, config)
        self.vms[newid] = clone

        def work() -> None:
            if self.vms.get(newid) is clone:
                clone.config.pop("lock", None)

        def remove_half_made_clone() -> None:
            # qemu-server destroys the new VM again when a clone fails.
            if self.vms.get(newid) is clone:
                self.vms.pop(newid)

        log = ["create %s clone of drive scsi0" % ("full" if full else "linked")]
        return self.start_task(source.node, "qmclone", source.vmid, user, work, log, remove_half_made_clone)

    def vm_template(self, params: dict, user: str) -> str:
        vm = self.vm(params["node"], params["vmid"])
        if vm.status == "running":
            raise ApiError(500, "you can't convert a running VM to a template")

        def work() -> None:
            vm.config["template"] = 1

        return self.start_task(vm.node, "qmtemplate", vm.vmid, user, work)

    # -- guest agent -------------------------------------------------------------------------------------
    def _agent_ready(self, params: dict) -> Vm:
        vm = self.vm(params["node"], params["vmid"])
        if vm.status != "running":
            raise ApiError(500, f"VM {vm.vmid} is not running")
        if str(vm.config.get("agent", "0")).split(",")[0] not in ("1", "enabled=1"):
            raise ApiError(500, "No QEMU guest agent configured")
        if time.time() - vm.started_at < self.agent_seconds:
            raise ApiError(500, "QEMU guest agent is not running")
        return vm

    def agent_ping(self, params: dict) -> dict:
        self._agent_ready(params)
        return {"result": {}}

    def agent_interfaces(self, params: dict) -> dict:
        vm = self._agent_ready(params)
        ipconfig = dict(p.split("=", 1) for p in str(vm.config.get("ipconfig0", "ip=dhcp")).split(",") if "=" in p)
        ip = ipconfig.get("ip", "dhcp")
        address, prefix = ip.split("/") if "/" in ip else (f"10.10.{vm.vmid // 250}.{vm.vmid % 250 + 2}", "24")
        return {
            "result": [
                {"name": "lo", "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]},
                {"name": "eth0", "hardware-address": f"bc:24:11:00:{vm.vmid // 256 % 256:02x}:{vm.vmid % 256:02x}",
                 "ip-addresses": [{"ip-address": address, "ip-address-type": "ipv4", "prefix": int(prefix)},
                                  {"ip-address": "fe80::be24:11ff:fe00:1", "ip-address-type": "ipv6", "prefix": 64}]},
            ]
        }  # fmt: skip

    # -- tasks ---------------------------------------------------------------------------------------------
    def task(self, params: dict) -> Task:
        self.node(params["node"])
        task = self.tasks.get(params["upid"])
        if task is None or task.node != params["node"]:
            raise ApiError(500, "no such task")
        return task

    def task_status(self, params: dict) -> dict:
        task = self.task(params)
        status = {"upid": task.upid, "node": task.node, "pid": task.pid, "pstart": task.pstart,
                  "starttime": task.starttime, "type": task.kind, "id": task.vmid, "user": task.user,
                  "status": task.status}  # fmt: skip
        if task.status == "stopped":
            status["exitstatus"] = task.exitstatus
        return status

    def task_log(self, params: dict) -> list:
        task = self.task(params)
        start, limit = params.get("start", 0), params.get("limit", 50)
        return [{"n": number + 1, "t": text} for number, text in enumerate(task.log)][start : start + limit]


def _opt(params: dict, *keys: str) -> dict:
    return {key: params[key] for key in keys if key in params}


def _size_bytes(text: str) -> int:
    match = re.match(r"^(\d+(?:\.\d+)?)([KMGT]?)$", text)
    if not match:
        raise ApiError(400, "Parameter verification failed.", {"size": f"unable to parse size '{text}'"})
    return int(float(match.group(1)) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}[match.group(2)])
