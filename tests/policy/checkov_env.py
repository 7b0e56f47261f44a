"""Checkov (PyPI `checkov`, pinned in checkov-requirements.txt) in a venv of its own, and a scan of manifests with the
policy in checkov.yaml: every rule lab-llm deliberately does not follow is skipped there with its reason.

Checkov's pins clash with the project's (see checkov-requirements.txt), so it gets a venv under
`~/.cache/lab-llm/checkov/<version>-<digest>/`, keyed by the requirements file and the Python version, installed on
first use (about two minutes, mostly downloads) and reused after. A file lock serialises concurrent installs; a stamp
written last marks a finished one, so an interrupted install is redone.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
REQUIREMENTS = HERE / "checkov-requirements.txt"
CONFIG = HERE / "checkov.yaml"
CACHE_ROOT = Path.home() / ".cache" / "lab-llm" / "checkov"
INSTALL_TIMEOUT = 1800  # seconds
SCAN_TIMEOUT = 600  # seconds; about 20 s for the reference lab's manifests


def ensure_venv(requirements: Path = REQUIREMENTS, cache_root: Path = CACHE_ROOT) -> Path:
    """The venv with the pinned checkov; raises RuntimeError with pip's output when the install fails."""
    version = next(
        line.split("==", 1)[1].strip() for line in requirements.read_text().splitlines() if line.startswith("checkov==")
    )
    key = hashlib.sha256(requirements.read_bytes() + sys.version.encode()).hexdigest()[:12]
    venv = cache_root / f"{version}-{key}"
    stamp = venv / ".installed"
    cache_root.mkdir(parents=True, exist_ok=True)
    with (cache_root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "pip"), "install", "--quiet", "--no-deps", "-r", str(requirements)],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(step)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        stamp.write_text(version)
    return venv


def scan(directory: Path, venv: Path) -> dict[str, Any]:
    """Checkov's Kubernetes checks over every manifest in `directory`, with checkov.yaml's skips: its JSON report."""
    command = [
        str(venv / "bin" / "checkov"),
        "--config-file",
        str(CONFIG),
        "--directory",
        str(directory),
        "--output",
        "json",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=SCAN_TIMEOUT, check=False)
    # Exit 1 means failed checks (the report says which); anything else without a report is an error.
    try:
        report = json.loads(done.stdout)
    except ValueError:
        raise RuntimeError(f"checkov gave no report (exit {done.returncode}):\n{done.stderr[-3000:]}") from None
    return report[0] if isinstance(report, list) else report
