"""module_utils/requirements.py as every module uses it: a module that imports a Python library beyond Ansible
fails without it with Ansible's missing_required_lib message, naming the package and the version the tests ran,
before it does anything.

Each module runs as Ansible runs it, in a Python process of its own (arguments from a file), where importing the
library fails as on a host that lacks it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.lab.llm.plugins.module_utils.requirements import TESTED_VERSIONS

# module_utils -> plugins -> unit -> tests -> llm -> lab -> ansible_collections -> the directory Python imports it from
COLLECTIONS_PATH = Path(__file__).resolve().parents[7]

K8S = dict(kubeconfig="/nonexistent/kubeconfig")
PVE = dict(
    api_host="pve.invalid", api_user="root@pam", api_token_id="ansible", api_token_secret="0a1b2c3d-token-secret"
)

# (module, the library blocked, arguments that pass the argument spec)
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("k8s_apply", "kubernetes", dict(manifests=[{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}])),
    ("k8s_wait", "kubernetes", dict(condition="node_ready", name="n1", **K8S)),
    ("rayservice", "kubernetes", dict(state="absent", **K8S)),
    (
        "serve_api_key",
        "kubernetes",
        dict(
            url="http://127.0.0.1:9",
            admin_username="admin",
            admin_password="admin-password-value",
            key_name="openwebui",
            secret_name="openwebui-openai",
            secret_namespace="openwebui",
            **K8S,
        ),
    ),
    ("deckhouse_static_node", "kubernetes", dict(name="n1", node_group="gpu", state="absent", **K8S)),
    ("proxmox_gpu_vm", "proxmoxer", dict(name="vm", node="pve1", **PVE)),
    ("proxmox_gpu_vm", "requests", dict(name="vm", node="pve1", **PVE)),
    ("proxmox_pci_mapping", "proxmoxer", dict(name="gpu", **PVE)),
    ("llm_fit_plan", "lab_llm", dict(model={"name": "qwen2.5-32b"})),
]

RUN = """
import runpy, sys
sys.modules[sys.argv.pop(1)] = None  # `import NAME` now raises ImportError, as on a host without it
runpy.run_module(sys.argv.pop(1), run_name="__main__", alter_sys=True)
"""


def run_without(module: str, library: str, args: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    arguments = tmp_path / "args.json"
    arguments.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    done = subprocess.run(
        [sys.executable, "-c", RUN, library, f"ansible_collections.lab.llm.plugins.modules.{module}", str(arguments)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(COLLECTIONS_PATH), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(lines[-1])
    return result


@pytest.mark.parametrize(("module", "library", "args"), CASES, ids=[f"{case[0]}-{case[1]}" for case in CASES])
def test_a_missing_library_is_named_with_its_tested_version(
    module: str, library: str, args: dict[str, Any], tmp_path: Path
) -> None:
    result = run_without(module, library, args, tmp_path)
    assert result.get("failed") is True, result
    package = library.replace("_", "-")
    wanted = "Failed to import the required Python library (%s==%s) on " % (package, TESTED_VERSIONS[package])
    assert wanted in result["msg"], result["msg"]
    assert result.get("changed") in (None, False), result
