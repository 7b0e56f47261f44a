"""Role lab.llm.proxmox_gpu_host's preflight and its vfio-pci file, through ansible-playbook on localhost.

The role's own tasks (preflight.yml) read a fixture sysfs tree and decide; its own template renders
/etc/modprobe.d/vfio.conf into a temporary directory. The whole role on a Debian 12 host (boot files,
initramfs, reboot, verify) is molecule's part.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.fixtures.sysfs.sysfs_tree import PRESETS, after_boot, build_tree

pytestmark = pytest.mark.playbook

ROLE = REPO_ROOT / "collections" / "ansible_collections" / "lab" / "llm" / "roles" / "proxmox_gpu_host"


def render_vfio_conf(
    tmp_path: Path, preset: str, addresses: list[str], etc_files: dict | None = None, **variables
) -> subprocess.CompletedProcess:
    host = PRESETS[preset]
    root = build_tree(tmp_path / "host", replace(host, etc_files={**host.etc_files, **(etc_files or {})}))
    tasks = [
        {"ansible.builtin.include_role": {"name": "lab.llm.proxmox_gpu_host", "tasks_from": "preflight"}},
        {"ansible.builtin.template": {"src": str(ROLE / "templates" / "modprobe-vfio.conf.j2"),
                                      "dest": str(tmp_path / "vfio.conf"), "mode": "0644"}},
    ]  # fmt: skip
    return run_role_tasks(tmp_path, {"proxmox_gpu_host_sysfs_root": str(root),
                                     "proxmox_gpu_host_config_root": str(root),
                                     "proxmox_gpu_host_gpu_addresses": addresses, **variables}, tasks)  # fmt: skip


def run_role_tasks(tmp_path: Path, variables: dict, tasks: list) -> subprocess.CompletedProcess:
    playbook = [
        {
            "name": "Parts of the GPU host role on localhost",
            "hosts": "localhost",
            "gather_facts": False,
            "vars": {"proxmox_gpu_host_allow_unsupported_os": True, **variables},
            "tasks": tasks,
        }
    ]
    path = tmp_path / "playbook.yml"
    path.write_text(yaml.safe_dump(playbook, sort_keys=False))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable)  # fmt: skip
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(path)]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240, check=False)


def conf_lines(tmp_path: Path) -> list[str]:
    return [line for line in (tmp_path / "vfio.conf").read_text().splitlines() if not line.startswith("#")]


def test_turing_card_gets_vfio_pci_before_the_drivers_of_all_four_functions(tmp_path: Path) -> None:
    # GTX 1660 SUPER: VGA, HD audio, USB 3.1 xHCI (xhci_pci) and USB-C UCSI (i2c_nvidia_gpu).
    done = render_vfio_conf(tmp_path, "intel-1660s-turing", [])
    assert done.returncode == 0, done.stdout[-4000:]
    assert conf_lines(tmp_path) == [
        "options vfio-pci ids=10de:1aeb,10de:1aec,10de:1aed,10de:21c4",
        "softdep i2c_nvidia_gpu pre: vfio-pci",
        "softdep nouveau pre: vfio-pci",
        "softdep nvidia pre: vfio-pci",
        "softdep nvidiafb pre: vfio-pci",
        "softdep snd_hda_intel pre: vfio-pci",
        "softdep xhci_pci pre: vfio-pci",
    ]


def test_one_of_two_identical_cards_is_refused_before_any_change(tmp_path: Path) -> None:
    done = render_vfio_conf(tmp_path, "intel-two-3090", ["0000:01:00"])
    assert done.returncode != 0
    assert "refusing to change anything" in done.stdout
    assert "'options vfio-pci ids=10de:1aef,10de:2204' binds every device with those ids" in done.stdout
    assert "would also take 0000:02:00.0, 0000:02:00.1 from the host" in done.stdout
    assert not (tmp_path / "vfio.conf").exists()


def test_blacklist_spares_the_drivers_of_a_card_left_to_the_host(tmp_path: Path) -> None:
    # The GT 1030 at 02:00 drives the host's console with nouveau; only the RTX 3090 goes to VMs.
    root = build_tree(tmp_path / "host", PRESETS["intel-3090-host-gt1030"])
    tasks = [
        {"ansible.builtin.include_role": {"name": "lab.llm.proxmox_gpu_host", "tasks_from": "preflight"}},
        {"ansible.builtin.template": {"src": str(ROLE / "templates" / "modprobe-blacklist.conf.j2"),
                                      "dest": str(tmp_path / "blacklist.conf"), "mode": "0644"}},
    ]  # fmt: skip
    done = run_role_tasks(tmp_path, {"proxmox_gpu_host_sysfs_root": str(root),
                                     "proxmox_gpu_host_gpu_addresses": ["0000:01:00"]}, tasks)  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:]
    lines = [line for line in (tmp_path / "blacklist.conf").read_text().splitlines() if not line.startswith("#")]
    # nouveau and nvidiafb can claim the GT 1030, so they stay; vfio-pci's ids and softdeps keep the 3090.
    assert lines == ["blacklist nvidia"]
    assert "0000:02:00 keeps nouveau, nvidiafb" in done.stdout


# /etc/modprobe.d/vfio.conf as the Proxmox VE admin guide (qm-pci-passthrough.adoc) has users write it, here
# parking an LSI SAS3008 HBA (1000:0097) for a storage VM.
HBA_VFIO_CONF = "options vfio-pci ids=1000:0097\n"


def test_ids_of_other_devices_in_vfio_conf_are_refused_before_any_change(tmp_path: Path) -> None:
    done = render_vfio_conf(tmp_path, "intel-3090-clean", [], {"etc/modprobe.d/vfio.conf": HBA_VFIO_CONF})
    assert done.returncode != 0
    assert "refusing to change anything" in done.stdout
    assert "/etc/modprobe.d/vfio.conf has vfio-pci ids 1000:0097 of devices other than NVIDIA cards" in done.stdout
    assert "proxmox_gpu_host_extra_vfio_ids" in done.stdout
    assert not (tmp_path / "vfio.conf").exists()


def test_extra_vfio_ids_join_the_gpus_in_one_ids_line(tmp_path: Path) -> None:
    done = render_vfio_conf(tmp_path, "intel-3090-clean", [], {"etc/modprobe.d/vfio.conf": HBA_VFIO_CONF},
                            proxmox_gpu_host_extra_vfio_ids=["1000:0097"])  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:]
    assert conf_lines(tmp_path)[0] == "options vfio-pci ids=1000:0097,10de:1aef,10de:2204"


def test_vfio_pci_ids_in_another_file_are_refused(tmp_path: Path) -> None:
    # A guide's file that sorts after the role's: modprobe would read its ids= last, and only those count.
    other = {"etc/modprobe.d/vfio-pci.conf": "options vfio_pci ids=10de:2204 disable_vga=1\n"}
    done = render_vfio_conf(tmp_path, "intel-3090-clean", [], other)
    assert done.returncode != 0
    assert "/etc/modprobe.d/vfio-pci.conf sets vfio-pci ids=10de:2204;" in done.stdout
    assert "only the last ids= modprobe reads would count" in done.stdout
    assert not (tmp_path / "vfio.conf").exists()
    # The same ids as the role's, in any order, change nothing and pass; so does the role's own earlier file,
    # even with the ids of an RTX 3060 that has left the host since.
    same = {"etc/modprobe.d/vfio-pci.conf": "options vfio-pci ids=10de:2204,10de:1aef\n",
            "etc/modprobe.d/vfio.conf": "options vfio-pci ids=10de:1aef,10de:2204,10de:2504\n"}  # fmt: skip
    assert render_vfio_conf(tmp_path / "same", "intel-3090-clean", [], same).returncode == 0


def test_both_identical_cards_selected_pass(tmp_path: Path) -> None:
    done = render_vfio_conf(tmp_path, "intel-two-3090", ["0000:01:00", "0000:02:00"])
    assert done.returncode == 0, done.stdout[-4000:]
    assert conf_lines(tmp_path)[0] == "options vfio-pci ids=10de:1aef,10de:2204"


def test_driverless_host_bridge_in_the_group_is_not_refused(tmp_path: Path) -> None:
    done = render_vfio_conf(tmp_path, "amd-3090-host-bridge", [])
    assert done.returncode == 0, done.stdout[-4000:]


def test_verify_fails_when_an_identical_card_left_to_the_host_went_to_vfio_pci(tmp_path: Path) -> None:
    # After a boot where something else bound both cards by id, only 0000:01:00 being selected.
    booted = after_boot(PRESETS["intel-two-3090"], "intel_iommu=on iommu=pt", {"10de:2204", "10de:1aef"})
    root = build_tree(tmp_path / "host", booted)
    done = run_role_tasks(
        tmp_path,
        {"proxmox_gpu_host_sysfs_root": str(root), "proxmox_gpu_host_reboot_reasons": [],
         "proxmox_gpu_host_may_reboot": False},
        [{"lab.llm.gpu_passthrough_facts": {"root": str(root)}},
         {"ansible.builtin.set_fact": {"proxmox_gpu_host_selected": "{{ ansible_facts.gpu_passthrough.gpus[:1] }}"}},
         {"ansible.builtin.include_role": {"name": "lab.llm.proxmox_gpu_host", "tasks_from": "verify"}}],
    )  # fmt: skip
    assert done.returncode != 0
    assert "devices that were not selected but are bound to vfio-pci: 0000:02:00.0, 0000:02:00.1" in done.stdout
