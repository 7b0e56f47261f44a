# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Python libraries lab.llm's modules import on the host that runs them, at the versions the tests ran.

The versions are the project's pins (constraints.txt of the lab-llm repository, its pyproject.toml for lab-llm
itself; tests/unit/test_engine_pins.py fails when they differ). A module whose library is missing fails with
Ansible's `missing_required_lib` message naming the package and that version, before it changes anything.
"""

from __future__ import annotations

from ansible.module_utils.basic import missing_required_lib

# {distribution name on PyPI: the version the tests ran}
TESTED_VERSIONS = {
    # The project's own package, which lab.llm.llm_fit_plan imports (pyproject.toml's version).
    "lab-llm": "0.1.0",
    "kubernetes": "37.0.2",
    "proxmoxer": "2.3.0",
    "requests": "2.34.2",
}


def missing_library(name: str, reason: str) -> str:
    """Ansible's message for a missing library (`Failed to import the required Python library (NAME==VERSION) on
    HOST's Python PATH. This is required REASON. ...`), with the tested version; `name` is a key of
    TESTED_VERSIONS."""
    return missing_required_lib("%s==%s" % (name, TESTED_VERSIONS[name]), reason=reason)
