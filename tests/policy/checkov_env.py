"""Checkov (PyPI `checkov`, pinned in checkov-requirements.txt) in a venv of its own, and a scan of manifests with the
policy in checkov.yaml: every rule lab-llm deliberately does not follow is skipped there with its reason.

Checkov's pins clash with the project's (see checkov-requirements.txt), so it gets a venv under
`~/.cache/lab-llm/checkov/<version>-<digest>/` (tests/pinned_venv.py), keyed by the requirements file and the Python
version, installed on first use (about two minutes, mostly downloads) and reused after.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests import pinned_venv

HERE = Path(__file__).parent
REQUIREMENTS = HERE / "checkov-requirements.txt"
CONFIG = HERE / "checkov.yaml"
CACHE_ROOT = pinned_venv.CACHE_ROOT / "checkov"
SCAN_TIMEOUT = 600  # seconds; about 20 s for the reference lab's manifests


def ensure_venv(requirements: Path = REQUIREMENTS, cache_root: Path = CACHE_ROOT) -> Path:
    """The venv with the pinned checkov (tests/pinned_venv.py); RuntimeError with pip's output on failure."""
    # The file pins checkov and everything it brings: no resolving against what pip would pick instead.
    return pinned_venv.ensure_venv(requirements, "checkov", cache_root, pip_options=("--no-deps",))


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
