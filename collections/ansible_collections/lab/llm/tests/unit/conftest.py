"""Unit tests of lab.llm's plugins, run by `ansible-test units` from the collection (`make test` does).

Most of them talk to the Kubernetes or Proxmox API stand-in, or read the reference schemas, which are not part of the
collection: they live in the lab-llm repository around it (tests/standins, ../shared). The built collection leaves
those tests out (galaxy.yml, build_ignore) and ships the ones that run on their own.
"""

from __future__ import annotations

import sys
from pathlib import Path

# tests/unit -> tests -> lab/llm -> lab -> ansible_collections -> collections -> the repository
REPOSITORY = Path(__file__).resolve().parents[6]

if (REPOSITORY / "tests" / "standins").is_dir():
    if str(REPOSITORY) not in sys.path:
        sys.path.insert(0, str(REPOSITORY))
    # The fixture, for the stand-in's CRDs.
    from tests.conftest import SHARED_DIR, shared_reference  # noqa: F401  # pylint: disable=unused-import
    from tests.standins.k8s.fixtures import CRD_DIR, KUBERAY_CRDS
    from tests.standins.k8s.server import KubeApiStandIn

    # ansible-test runs every test in a process forked from this one: parse the schemas the stand-in validates
    # with once, here, so each fork inherits them instead of parsing them again.
    if (SHARED_DIR / "reference" / "crds").is_dir():
        KubeApiStandIn(sorted(CRD_DIR.glob("*.yaml")) + [SHARED_DIR / "reference" / "crds" / n for n in KUBERAY_CRDS])
