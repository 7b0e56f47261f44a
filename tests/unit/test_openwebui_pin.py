"""The OpenWebUI the tests run is the OpenWebUI the `openwebui` role deploys: one version, pinned in two places
(the role's image tag, the test's `open-webui==` requirement), that must move together."""

from __future__ import annotations

import yaml

from tests.conftest import COLLECTION_ROOT
from tests.integration.local.openwebui import pinned_version

ROLE = COLLECTION_ROOT / "roles" / "openwebui"
IMAGE = "ghcr.io/open-webui/open-webui"


def test_role_default_image_is_the_tested_release() -> None:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert defaults["openwebui_image"] == f"{IMAGE}:v{pinned_version()}"


def test_role_argument_spec_documents_the_same_default() -> None:
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    option = specs["argument_specs"]["main"]["options"]["openwebui_image"]
    assert option["default"] == f"{IMAGE}:v{pinned_version()}"
