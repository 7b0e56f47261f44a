"""lab.llm.proxmox_gpu_vm against the Proxmox API stand-in: create, converge, live vs restart changes,
bad input failing before any write, a failed clone and its re-run, check mode, absent."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import pytest

from ansible_collections.lab.llm.plugins.module_utils.pve.client import PveClient
from ansible_collections.lab.llm.plugins.module_utils.pve.vm import CLONE_MARKER
from ansible_collections.lab.llm.plugins.modules import proxmox_gpu_vm
from tests.module_runner import ModuleExit
from tests.module_runner import run_module_result as run_module_main
from tests.standins.pve.scenario import (
    TEMPLATE_NAME,
    TEMPLATE_VMID,
    connection_args,
    mapping_entry,
    root_connection_args,
    running_standin,
)

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINYDR9JYyyug5eZrmtUx/hWRntaWghRo5xo+3YWnD3+Q admin@lab"
RTX3090_MAP = [mapping_entry(node) for node in ("pve2", "pve3", "pve4")]


@pytest.fixture
def pve(shared_reference: Path, tmp_path: Path):
    """A stand-in of its own per test: no test sees the VMs (or the GPUs they hold) of another, whatever the order
    and whether the tests share a process (plain pytest) or not (ansible-test units forks per test)."""
    with running_standin(shared_reference, tmp_path / "pve") as standin:
        standin.cluster.mappings["rtx3090"] = {"map": list(RTX3090_MAP), "description": "RTX 3090"}
        yield standin


def run_module(monkeypatch: pytest.MonkeyPatch, args: dict) -> ModuleExit:
    return run_module_main(monkeypatch, proxmox_gpu_vm.main, args)


def vm_args(pve, name: str, node: str = "pve2", **extra) -> dict:
    args = {
        **connection_args(pve),
        "name": name,
        "node": node,
        "template": TEMPLATE_NAME,
        "memory": 8192,
        "cores": 4,
        "gpus": [{"mapping": "rtx3090"}],
        "network": {"bridge": "vmbr0"},
        "cloud_init": {"ciuser": "debian", "sshkeys": [KEY], "ipconfig0": "ip=192.0.2.31/24,gw=192.0.2.1",
                       "password": "s3cret-pass"},
        "disk_size": "32G",
        "efidisk_storage": "ceph-vm",
        "wait_timeout": 30,
        "_ansible_diff": True,
    }  # fmt: skip
    args.update(extra)
    return args


def vm_named(pve, name: str):
    return next(vm for vm in pve.cluster.vms.values() if vm.config.get("name") == name)


def test_create_from_template_then_converge(pve, monkeypatch: pytest.MonkeyPatch) -> None:
    created = run_module(monkeypatch, vm_args(pve, "gpu-create", state="started", wait_for_agent=True,
                                              agent_timeout=20))  # fmt: skip
    assert not created.failed, created.result
    assert created.result["changed"] is True
    assert created.result["created"] is True
    vm = vm_named(pve, "gpu-create")
    assert vm.node == "pve2"
    assert vm.status == "running"
    config = vm.config
    assert config["machine"] == "q35"
    assert config["bios"] == "ovmf"
    assert config["efidisk0"].startswith("ceph-vm:vm-")
    assert config["cpu"] == "host"
    assert config["balloon"] == 0
    assert config["hostpci0"] == "mapping=rtx3090,pcie=1"
    assert config["tags"] == "lab-llm"
    assert unquote(config["sshkeys"]) == KEY + "\n"
    assert config["scsi0"].endswith("size=32G")
    assert config["cipassword"] == "s3cret-pass"
    assert "cipassword" not in created.result["config"]
    assert "s3cret-pass" not in json.dumps(created.result)
    assert created.result["ip_addresses"] == ["192.0.2.31"]

    writes_before = len(pve.cluster.writes())
    again = run_module(monkeypatch, vm_args(pve, "gpu-create", state="started"))
    assert not again.failed, again.result
    assert again.result["changed"] is False, again.result.get("diff")
    assert again.result["restart_pending"] is False
    assert len(pve.cluster.writes()) == writes_before


def test_memory_changes_live_and_a_gpu_waits_for_a_restart(pve, monkeypatch, warnings) -> None:
    live = {"hotplug": "network,disk,usb,memory"}
    assert not run_module(monkeypatch, vm_args(pve, "gpu-live", node="pve3", state="started", **live)).failed
    vm = vm_named(pve, "gpu-live")

    more_memory = run_module(monkeypatch, vm_args(pve, "gpu-live", node="pve3", state="started", memory=12288, **live))
    assert more_memory.result["changed"] is True
    assert more_memory.result["changed_options"] == ["memory"]
    assert more_memory.result["restart_pending"] is False
    assert vm.config["memory"] == "12288"
    assert vm.pending == {}

    primary_gpu = [{"mapping": "rtx3090", "x_vga": True}]
    pending = run_module(monkeypatch, vm_args(pve, "gpu-live", node="pve3", state="started", memory=12288,
                                              gpus=primary_gpu, **live))  # fmt: skip
    assert pending.result["changed"] is True
    assert pending.result["restart_pending"] is True
    assert pending.result["pending_options"] == ["hostpci0"]
    assert vm.pending["hostpci0"] == "mapping=rtx3090,pcie=1,x-vga=1"
    assert vm.config["hostpci0"] == "mapping=rtx3090,pcie=1"
    assert any("must be restarted for hostpci0" in warning for warning in warnings)

    still_pending = run_module(monkeypatch, vm_args(pve, "gpu-live", node="pve3", state="started", memory=12288,
                                                    gpus=primary_gpu, **live))  # fmt: skip
    assert still_pending.result["changed"] is False
    assert still_pending.result["restart_pending"] is True

    restarted = run_module(monkeypatch, vm_args(pve, "gpu-live", node="pve3", state="started", memory=12288,
                                                gpus=primary_gpu, allow_restart=True, **live))  # fmt: skip
    assert restarted.result["changed"] is True
    assert restarted.result["restarted"] is True
    assert vm.config["hostpci0"] == "mapping=rtx3090,pcie=1,x-vga=1"
    assert vm.pending == {}
    assert vm.status == "running"


def assert_fails_without_writes(pve, monkeypatch, args: dict, message: str) -> None:
    writes_before = len(pve.cluster.writes())
    outcome = run_module(monkeypatch, args)
    assert outcome.failed, outcome.result
    assert message in outcome.result["msg"]
    assert pve.cluster.writes()[writes_before:] == []


def test_unknown_node_fails_before_any_write(pve, monkeypatch) -> None:
    assert_fails_without_writes(
        pve, monkeypatch, vm_args(pve, "gpu-bad-node", node="pve9"), "node 'pve9' is not in the cluster"
    )


def test_gpu_not_on_that_node_fails_before_any_write(pve, monkeypatch) -> None:
    assert_fails_without_writes(
        pve, monkeypatch, vm_args(pve, "gpu-bad-map", node="pve1"),
        "PCI mapping 'rtx3090' has no device on node pve1 (it maps pve2, pve3, pve4)",
    )  # fmt: skip
    as_root = {**vm_args(pve, "gpu-bad-pci", node="pve1", gpus=[{"host": "0000:41:00"}]), **root_connection_args(pve)}
    del as_root["api_token_id"], as_root["api_token_secret"]
    assert_fails_without_writes(pve, monkeypatch, as_root, "PCI device 0000:41:00 is not on node pve1")


@pytest.mark.parametrize(
    ("gpu", "message"),
    [
        ({"mapping": "rtx3090", "host": "0000:01:00"}, "parameters are mutually exclusive: mapping|host found in gpus"),
        ({"pcie": True}, "one of the following is required: mapping, host found in gpus"),
    ],
)
def test_a_gpu_is_a_mapping_or_a_host_never_both(pve, monkeypatch, gpu: dict, message: str) -> None:
    """The argument spec carries the rule, so it fails before the module connects."""
    requests_before = len(pve.cluster.requests)
    assert_fails_without_writes(pve, monkeypatch, vm_args(pve, "gpu-both", gpus=[gpu]), message)
    assert len(pve.cluster.requests) == requests_before


def test_vmid_of_a_vm_we_do_not_manage_is_refused(pve, monkeypatch) -> None:
    pve.cluster.add_vm(555, "pve2", {"name": "someones-db", "memory": "4096", "tags": "prod"}, status="running")
    assert_fails_without_writes(
        pve, monkeypatch, vm_args(pve, "gpu-taken", vmid=555),
        "vmid 555 is taken by VM 'someones-db' on node pve2, which this module does not manage",
    )  # fmt: skip
    assert pve.cluster.vms[555].config == {"name": "someones-db", "memory": "4096", "tags": "prod"}


@pytest.mark.parametrize(
    ("sshkeys", "message"),
    [([KEY + "\n" + KEY], "sshkeys[0] holds more than one line"), (["ssh-ed25519 AAAA C3Nz x"], "sshkeys[0] is not")],
)
def test_bad_sshkeys_fail_before_any_write(pve, monkeypatch, sshkeys: list, message: str) -> None:
    args = vm_args(pve, "gpu-bad-keys")
    args["cloud_init"] = {"sshkeys": sshkeys}
    assert_fails_without_writes(pve, monkeypatch, args, message)


def test_failed_clone_reports_the_task_error_and_a_rerun_converges(pve, monkeypatch) -> None:
    pve.cluster.fail_next_task("qmclone", "clone failed: rbd: error opening pool 'ceph-vm': (2) No such file")
    failed = run_module(monkeypatch, vm_args(pve, "gpu-retry", node="pve4"))
    assert failed.failed
    assert "VM gpu-retry on node pve4: task UPID:pve1:" in failed.result["msg"]
    assert "clone failed: rbd: error opening pool" in failed.result["msg"]
    assert not any(vm.config.get("name") == "gpu-retry" for vm in pve.cluster.vms.values())

    converged = run_module(monkeypatch, vm_args(pve, "gpu-retry", node="pve4"))
    assert not converged.failed, converged.result
    assert converged.result["created"] is True
    assert vm_named(pve, "gpu-retry").node == "pve4"
    assert run_module(monkeypatch, vm_args(pve, "gpu-retry", node="pve4")).result["changed"] is False


def test_check_mode_reports_changes_and_writes_nothing(pve, monkeypatch) -> None:
    writes_before = len(pve.cluster.writes())
    planned = run_module(monkeypatch, vm_args(pve, "gpu-planned", _ansible_check_mode=True))
    assert planned.result["changed"] is True
    assert planned.result["created"] is True
    assert pve.cluster.writes()[writes_before:] == []

    # A running VM of ours.
    assert not run_module(monkeypatch, vm_args(pve, "gpu-preview", node="pve3", state="started")).failed
    writes_before = len(pve.cluster.writes())
    preview = run_module(
        monkeypatch, vm_args(pve, "gpu-preview", node="pve3", state="started", cores=6, _ansible_check_mode=True)
    )
    assert preview.result["changed"] is True
    assert preview.result["diff"] == {"before": {"cores": 4}, "after": {"cores": 6}}
    assert preview.result["pending_options"] == ["cores"]
    assert pve.cluster.writes()[writes_before:] == []


def test_stopped_then_absent_destroys_only_a_managed_vm(pve, monkeypatch) -> None:
    if 555 not in pve.cluster.vms:
        pve.cluster.add_vm(555, "pve2", {"name": "someones-db", "memory": "4096", "tags": "prod"}, status="running")
    assert not run_module(monkeypatch, vm_args(pve, "gpu-gone", node="pve4", state="started")).failed
    stopped = run_module(monkeypatch, vm_args(pve, "gpu-gone", node="pve4", state="stopped"))
    assert stopped.result["changed"] is True
    assert stopped.result["status"] == "stopped"
    assert run_module(monkeypatch, vm_args(pve, "gpu-gone", node="pve4", state="stopped")).result["changed"] is False
    gone = run_module(monkeypatch, vm_args(pve, "gpu-gone", node="pve4", state="absent"))
    assert gone.result["changed"] is True
    assert not any(vm.config.get("name") == "gpu-gone" for vm in pve.cluster.vms.values())
    assert run_module(monkeypatch, vm_args(pve, "gpu-gone", node="pve4", state="absent")).result["changed"] is False
    refused = run_module(monkeypatch, vm_args(pve, "someones-db", node="pve2", state="absent"))
    assert refused.failed
    assert "not managed by this module" in refused.result["msg"]
    assert 555 in pve.cluster.vms


def test_a_run_stopped_mid_clone_is_picked_up_while_the_clone_is_locked(pve, monkeypatch) -> None:
    """A first run that stopped after POST clone leaves an untagged VM locked by the clone; the next run
    recognizes it by the clone's marker, waits for the lock to go and finishes the job."""
    client = PveClient.from_params(
        {"api_password": None, "validate_certs": True, "api_retries": 1, **connection_args(pve)}
    )
    pve.cluster.task_seconds = 1.0
    try:
        client.post(f"nodes/pve1/qemu/{TEMPLATE_VMID}/clone", newid=4300, name="gpu-interrupted", full=1,
                    target="pve2", description=CLONE_MARKER)  # fmt: skip
        assert pve.cluster.vms[4300].config["lock"] == "clone"
        resumed = run_module(monkeypatch, vm_args(pve, "gpu-interrupted"))
    finally:
        pve.cluster.task_seconds = 0.1
    assert not resumed.failed, resumed.result
    assert resumed.result["vmid"] == 4300
    assert "created" not in resumed.result
    assert "lock" not in pve.cluster.vms[4300].config
    assert pve.cluster.vms[4300].config["tags"] == "lab-llm"
    assert pve.cluster.vms[4300].config["hostpci0"] == "mapping=rtx3090,pcie=1"


def test_check_mode_tolerates_a_mapping_an_earlier_task_would_create(pve, monkeypatch, warnings) -> None:
    planned = run_module(monkeypatch, vm_args(pve, "gpu-new-model", gpus=[{"mapping": "rtx5090"}],
                                              _ansible_check_mode=True))  # fmt: skip
    assert not planned.failed, planned.result
    assert planned.result["changed"] is True
    assert any("PCI mapping 'rtx5090' does not exist" in warning for warning in warnings)
    refused = run_module(monkeypatch, vm_args(pve, "gpu-new-model", gpus=[{"mapping": "rtx5090"}]))
    assert refused.failed
    assert "PCI mapping 'rtx5090' does not exist (mappings: rtx3090)" in refused.result["msg"]


# -- raw PCI devices are root@pam's alone (issue 13, item 4) -----------------------------------------
def test_raw_pci_with_an_api_token_is_refused_before_the_clone(pve, monkeypatch) -> None:
    args = vm_args(pve, "gpu-raw", node="pve2", gpus=[{"host": "0000:01:00"}])
    for _attempt in range(2):  # every re-run says the same and still leaves nothing behind
        assert_fails_without_writes(pve, monkeypatch, args, "Use a cluster resource mapping instead")
    outcome = run_module(monkeypatch, args)
    assert "gpus[0] host=0000:01:00" in outcome.result["msg"]
    assert "the API token ansible@pve!lab" in outcome.result["msg"]
    assert not any(vm.config.get("name") == "gpu-raw" for vm in pve.cluster.vms.values())


def test_raw_pci_as_root_works_and_a_token_may_not_replace_it(pve, monkeypatch) -> None:
    as_root = {**vm_args(pve, "gpu-raw-root", node="pve4", gpus=[{"host": "0000:01:00"}]), **root_connection_args(pve)}
    del as_root["api_token_id"], as_root["api_token_secret"]
    created = run_module(monkeypatch, as_root)
    assert not created.failed, created.result
    vm = pve.cluster.vms[created.result["vmid"]]
    assert vm.config["hostpci0"] == "0000:01:00,pcie=1"
    # The token may not change (or delete) what root set: refused before any write, pointing to a mapping.
    with_token = vm_args(pve, "gpu-raw-root", node="pve4", gpus=[{"mapping": "rtx3090"}])
    assert_fails_without_writes(pve, monkeypatch, with_token, "hostpci0 of the VM is '0000:01:00,pcie=1'")
    assert vm.config["hostpci0"] == "0000:01:00,pcie=1"


def test_mapping_proxmox_would_refuse_at_start_is_refused_before_the_clone(pve, monkeypatch) -> None:
    # Entries without subsystem-id, or with a stale IOMMU group: the VM could be made but never started.
    pve.cluster.mappings["rtx3090-stale"] = {"map": [mapping_entry("pve2").replace("iommugroup=14", "iommugroup=13")]}
    pve.cluster.mappings["rtx3090-bare"] = {"map": ["node=pve2,path=0000:01:00,id=10de:2204,iommugroup=14"]}
    for mapping, message in [
        ("rtx3090-stale", "has IOMMU group 14, not 13"),
        ("rtx3090-bare", "lacks subsystem_id (the device has 1043:87b3)"),
    ]:
        args = vm_args(pve, "gpu-stale-map", node="pve2", gpus=[{"mapping": mapping}])
        assert_fails_without_writes(
            pve, monkeypatch, args, f"PCI mapping {mapping!r} does not match the device on node pve2"
        )
        assert message in run_module(monkeypatch, args).result["msg"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"cores": -2}, "cores=-2: Proxmox requires at least 1"),
        ({"sockets": 0}, "sockets=0: Proxmox requires at least 1"),
        ({"memory": 8}, "memory=8: Proxmox requires at least 16 MiB"),
        ({"vmid": 42}, "vmid=42: Proxmox requires 100 to 999999999"),
        ({"machine": "q36"}, "machine='q36': not a QEMU machine type"),
        ({"disk": "scsi31"}, "disk='scsi31'"),
        ({"efidisk_storage": "ceph vm"}, "efidisk_storage='ceph vm': not a Proxmox storage ID"),
        ({"hotplug": "network,gpu"}, "hotplug='network,gpu': unknown feature 'gpu'"),
        ({"tags": ["gpu", "-bad"]}, "tags: '-bad' is not a Proxmox tag"),
        ({"network": {"bridge": "vmbr0", "vlan": 4095}}, "network.vlan=4095: Proxmox requires net0 tag from 1 to 4094"),
        ({"network": {"bridge": "vmbr0", "mtu": 0}}, "network.mtu=0"),
    ],
)
def test_a_value_proxmox_would_refuse_fails_before_the_clone(pve, monkeypatch, extra: dict, message: str) -> None:
    assert_fails_without_writes(pve, monkeypatch, vm_args(pve, "gpu-bad-setting", **extra), message)


@pytest.mark.parametrize("name", ["gpu_vm", "gpu vm", "-gpu", "gpu-", "gpu..vm", ""])
def test_a_name_that_is_not_a_dns_name_fails_before_the_clone(pve, monkeypatch, name: str) -> None:
    assert_fails_without_writes(pve, monkeypatch, vm_args(pve, name), "name=%r: Proxmox requires a DNS name" % name)


def test_every_refused_value_is_named_at_once(pve, monkeypatch) -> None:
    outcome = run_module(monkeypatch, vm_args(pve, "gpu_two", cores=-2, memory=0))
    assert outcome.failed
    for part in ("name='gpu_two'", "cores=-2", "memory=0"):
        assert part in outcome.result["msg"]


def test_the_checks_accept_what_the_api_schema_accepts(shared_reference: Path) -> None:
    """The module's rules against the stand-in's schema checker (Proxmox's own API schema): a value the module
    accepts is one Proxmox accepts, and the other way round, for the boundaries of each rule."""
    from ansible_collections.lab.llm.plugins.module_utils.pve import vm as vms
    from tests.standins.pve.schema import ApiSchema, ValidationFailed

    found = ApiSchema.load(shared_reference / "proxmox" / "pve-api-subset.json").match(
        "PUT", "/nodes/pve2/qemu/100/config"
    )
    assert found is not None
    endpoint = found[0]
    base = {"name": "ok", "vmid": None, "cores": 1, "sockets": 1, "memory": 16, "machine": "q35", "disk": "scsi0",
            "storage": None, "efidisk_storage": "local-lvm", "hotplug": None, "tags": [], "managed_tag": "lab-llm",
            "network": None, "cloud_init": None}  # fmt: skip
    cases = [("cores", 0), ("cores", 1), ("sockets", 0), ("sockets", 2), ("memory", 15), ("memory", 16),
             ("name", "a-b.c"), ("name", "a_b"), ("name", "a-"), ("machine", "pc-q35-9.2+pve1"),
             ("machine", "q35x"), ("vmid", 99), ("vmid", 100)]  # fmt: skip
    for option, value in cases:
        module_ok = not vms.settings_problems({**base, option: value})
        try:
            endpoint.validate({option: [str(value)]})
            api_ok = True
        except ValidationFailed as exc:
            api_ok = option not in exc.errors
        assert module_ok == api_ok, (option, value)
