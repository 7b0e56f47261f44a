"""The lab.llm collection installs on its own: built with `ansible-galaxy collection build`, installed into an empty
collections path together with the collections it declares (taken from the `ansible` package, as no Galaxy server
is reachable here), and then every module and role documents itself with `ansible-doc` from that path alone."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from tests.conftest import COLLECTION_ROOT, REPO_ROOT

BIN = Path(sys.executable).parent
# The collections the `ansible` package bundles, beside the interpreter's site-packages.
BUNDLED = Path(sysconfig.get_paths()["purelib"]) / "ansible_collections"


def galaxy() -> dict[str, Any]:
    return yaml.safe_load((COLLECTION_ROOT / "galaxy.yml").read_text())


def isolated_env(tmp_path: Path, collections: Path) -> dict[str, str]:
    """Ansible sees `collections` and nothing else: no project ansible.cfg, no collections on sys.path."""
    config = tmp_path / "ansible.cfg"
    config.write_text("[defaults]\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_CONFIG=str(config),
        ANSIBLE_COLLECTIONS_PATH=str(collections),
        ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
        ANSIBLE_HOME=str(tmp_path / "home"),
        ANSIBLE_NOCOLOR="1",
    )
    return env


def run(command: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Path]:
    """(the tarball, the environment that sees only the install, the collections path it was installed into)."""
    tmp_path = tmp_path_factory.mktemp("collection")
    collections = tmp_path / "collections"
    env = isolated_env(tmp_path, collections)
    galaxy_cli = str(BIN / "ansible-galaxy")
    run([galaxy_cli, "collection", "build", str(COLLECTION_ROOT), "--output-path", "dist"], env, tmp_path)
    (tarball,) = (tmp_path / "dist").glob("lab-llm-*.tar.gz")
    # Each declared dependency comes from the ansible package's copy (an installed collection is a valid source).
    requirements = {"collections": [{"name": str(tarball), "type": "file"}]}
    for name in galaxy()["dependencies"]:
        namespace, collection = name.split(".")
        requirements["collections"].append({"name": str(BUNDLED / namespace / collection), "type": "dir"})
    (tmp_path / "requirements.yml").write_text(yaml.safe_dump(requirements))
    run(
        [galaxy_cli, "collection", "install", "--offline", "-r", "requirements.yml", "-p", str(collections)],
        env,
        tmp_path,
    )
    return tarball, env, collections


def test_galaxy_and_requirements_declare_what_the_roles_call() -> None:
    """Every collection the roles, playbooks and plugins name (other than ansible.builtin and lab.llm itself) is a
    declared dependency, in galaxy.yml and in collections/requirements.yml with the same range."""
    used = set()
    for root in (COLLECTION_ROOT / "roles", COLLECTION_ROOT / "plugins", REPO_ROOT / "playbooks"):
        for path in root.rglob("*"):
            if path.suffix in (".yml", ".yaml", ".py", ".j2"):
                for word in path.read_text().replace(":", " ").split():
                    parts = word.strip("\"'{}()[],").split(".")
                    if len(parts) == 3 and all(part.isidentifier() for part in parts):
                        used.add(".".join(parts[:2]))
    known = {name for name in used if (BUNDLED / name.replace(".", "/") / "MANIFEST.json").is_file()}
    declared = galaxy()["dependencies"]
    assert known - {"ansible.builtin"} <= set(declared), known
    requirements = yaml.safe_load((REPO_ROOT / "collections" / "requirements.yml").read_text())["collections"]
    assert {entry["name"]: entry["version"] for entry in requirements} == declared


def test_the_tarball_carries_the_collection_readme(installed: tuple[Path, dict[str, str], Path]) -> None:
    tarball, _env, _collections = installed
    with tarfile.open(tarball) as archive:
        manifest = json.load(archive.extractfile("MANIFEST.json"))  # type: ignore[arg-type]
        readme = archive.extractfile("README.md").read().decode()  # type: ignore[union-attr]
    assert manifest["collection_info"]["readme"] == "README.md"
    assert manifest["collection_info"]["dependencies"] == galaxy()["dependencies"]
    modules = sorted(path.stem for path in (COLLECTION_ROOT / "plugins" / "modules").glob("*.py"))
    roles = sorted(path.name for path in (COLLECTION_ROOT / "roles").iterdir() if path.is_dir())
    missing = [name for name in modules + roles if f"`{name}`" not in readme]
    assert not missing, f"the collection README does not name {missing}"


def test_dependencies_are_installed_in_the_declared_range(installed: tuple[Path, dict[str, str], Path]) -> None:
    _tarball, _env, collections = installed
    for name, wanted in galaxy()["dependencies"].items():
        manifest = collections / "ansible_collections" / name.replace(".", "/") / "MANIFEST.json"
        version = json.loads(manifest.read_text())["collection_info"]["version"]
        assert version in SpecifierSet(wanted), (name, version, wanted)


def test_every_module_role_and_filter_documents_itself_from_the_install(
    installed: tuple[Path, dict[str, str], Path], tmp_path: Path
) -> None:
    _tarball, env, _collections = installed
    modules = sorted(f"lab.llm.{path.stem}" for path in (COLLECTION_ROOT / "plugins" / "modules").glob("*.py"))
    roles = sorted(f"lab.llm.{path.name}" for path in (COLLECTION_ROOT / "roles").iterdir() if path.is_dir())
    listed = json.loads(run([str(BIN / "ansible-doc"), "-t", "module", "--list", "--json", "lab.llm"], env, tmp_path))
    assert sorted(listed) == modules
    docs = json.loads(run([str(BIN / "ansible-doc"), "-t", "module", "--json", *modules], env, tmp_path))
    assert sorted(docs) == modules
    for name, doc in docs.items():
        assert doc["doc"]["options"] and doc["examples"] and doc["return"], name
    role_docs = json.loads(run([str(BIN / "ansible-doc"), "-t", "role", "--json", *roles], env, tmp_path))
    assert sorted(role_docs) == roles
    for name, doc in role_docs.items():
        assert doc["entry_points"]["main"]["options"], name
    filters = sorted(f"lab.llm.{path.stem}" for path in (COLLECTION_ROOT / "plugins" / "filter").glob("*.py"))
    filter_docs = json.loads(run([str(BIN / "ansible-doc"), "-t", "filter", "--json", *filters], env, tmp_path))
    assert sorted(filter_docs) == filters
    for name, doc in filter_docs.items():
        assert doc["doc"]["options"]["_input"] and doc["examples"] and doc["return"], name


def test_the_action_groups_reach_the_modules_of_the_install(
    installed: tuple[Path, dict[str, str], Path], tmp_path: Path
) -> None:
    """module_defaults `group/lab.llm.k8s` sets kubeconfig on lab.llm's modules and on kubernetes.core's (each then
    fails naming the file given). `group/lab.llm.proxmox` is exercised by the gpu_vm role's test (tests/integration/
    pve), whose API options reach both Proxmox modules only through it."""
    _tarball, env, _collections = installed
    playbook = tmp_path / "groups.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "hosts": "localhost",
                    "gather_facts": False,
                    "module_defaults": {
                        "group/lab.llm.k8s": {"kubeconfig": "/nonexistent/kubeconfig-from-the-group"},
                    },
                    "tasks": [
                        {"lab.llm.k8s_wait": {"condition": "node_ready", "name": "n"}, "ignore_errors": True},
                        {"kubernetes.core.k8s_info": {"kind": "Node"}, "ignore_errors": True},
                    ],
                }
            ]
        )
    )
    done = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-v", str(playbook)],
        env=dict(env, ANSIBLE_PYTHON_INTERPRETER=sys.executable),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("/nonexistent/kubeconfig-from-the-group") >= 2, done.stdout


def needs_the_repository(text: str) -> bool:
    """A test file that imports the lab-llm repository's own tests package (the API stand-ins, their fixtures) or
    reads the reference schemas of ../shared: it can only run inside that checkout."""
    return bool(re.search(r"^\s*(from|import) tests\b", text, flags=re.MULTILINE)) or "shared_reference" in text


def test_the_tarball_ships_no_test_that_needs_the_repository(installed: tuple[Path, dict[str, str], Path]) -> None:
    """Outside the repository such a test could only be skipped; build_ignore in galaxy.yml leaves them out."""
    tarball, _env, _collections = installed
    with tarfile.open(tarball) as archive:
        shipped = {name: archive.extractfile(name) for name in archive.getnames() if name.startswith("tests/")}
        assert not [name for name in shipped if "__pycache__" in name or name.startswith("tests/output")], shipped
        texts = {name: file.read().decode() for name, file in shipped.items() if name.endswith(".py") and file}
    needing = sorted(name for name, text in texts.items() if needs_the_repository(text))
    assert not needing, (
        f"the tarball ships tests that need the lab-llm repository (add them to build_ignore): {needing}"
    )
    assert any(name.startswith("tests/unit/plugins/") for name in texts), "the tarball ships no plugin test at all"


def test_the_shipped_tests_pass_from_the_install(installed: tuple[Path, dict[str, str], Path]) -> None:
    """Run from the installed collection alone, every shipped test runs and passes; none is skipped."""
    _tarball, env, collections = installed
    root = collections / "ansible_collections" / "lab" / "llm"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", "tests/unit"],
        cwd=root,
        env=dict(env, PYTHONPATH=str(collections)),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ passed(, \d+ warnings?)? in .*", summary), summary
