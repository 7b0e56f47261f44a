"""A tool the tests run from PyPI, pinned in a requirements file, in a venv of its own that is installed once.

For tools whose own pins clash with the project's (OpenWebUI, checkov). The venv lives under
`CACHE_ROOT/<tool>/<version>-<digest>/`, keyed by the requirements file and the Python version (major.minor), so a
changed pin or Python gets a fresh venv and an unchanged one is reused. A file lock serialises concurrent test
sessions; a stamp written last marks a finished install, so an interrupted one is thrown away and redone.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

CACHE_ROOT = Path.home() / ".cache" / "lab-llm"
INSTALL_TIMEOUT = 1800  # seconds, per step


def pinned_version(requirements: Path, package: str) -> str:
    """The `PACKAGE==VERSION` pin of `requirements` (comments ignored). Raises ValueError when there is none."""
    for line in requirements.read_text().splitlines():
        name, sep, version = line.split("#", 1)[0].partition("==")
        if sep and name.strip().lower() == package.lower():
            return version.strip()
    raise ValueError(f"no {package}==VERSION line in {requirements}")


def ensure_venv(
    requirements: Path,
    package: str,
    cache_root: Path,
    *,
    upgrade_pip: bool = False,
    pip_options: Sequence[str] = (),
) -> Path:
    """The venv holding `requirements` (whose pin of `package` names it), installed on first use and then reused.

    `pip_options` go to `pip install -r` (e.g. `--no-deps` for a file that pins every dependency). Raises
    RuntimeError with pip's output when a step of the install fails.
    """
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    digest = hashlib.sha256(requirements.read_bytes() + python.encode()).hexdigest()[:12]
    venv = cache_root / f"{pinned_version(requirements, package)}-{digest}"
    stamp = venv / ".installed"
    cache_root.mkdir(parents=True, exist_ok=True)
    with (cache_root / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip"]
        steps = [[sys.executable, "-m", "venv", str(venv)]]
        if upgrade_pip:
            steps.append([*pip, "install", "--quiet", "--upgrade", "pip"])
        steps.append([*pip, "install", "--quiet", *pip_options, "-r", str(requirements)])
        started = time.monotonic()
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"installing {package} failed at {step[2:]}:\n{(done.stdout + done.stderr)[-4000:]}")
        stamp.write_text(f"installed in {time.monotonic() - started:.0f} s\n")
    return venv
