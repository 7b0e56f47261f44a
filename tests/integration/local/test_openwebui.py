"""The real OpenWebUI in front of the local stack, driven through its own HTTP API: it runs the pinned release
and lists the served model.

OpenWebUI is the PyPI package at the version the `openwebui` role deploys (see `openwebui.py`); it reaches
lab-llm with the demo's user API key through a relay that records what it sent and what came back.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.integration.local.conftest import LocalDeployment, free_port
from tests.integration.local.openwebui import OpenWebUIProcess, RecordingRelay, ensure_venv, pinned_version, running

pytestmark = pytest.mark.stack


@dataclass
class OpenWebUI:
    process: OpenWebUIProcess
    relay: RecordingRelay
    token: str

    @property
    def base_url(self) -> str:
        return self.process.base_url

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.request(method, f"{self.base_url}{path}", headers=headers, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def openwebui(local_deployment: LocalDeployment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenWebUI]:
    venv = ensure_venv()
    data_dir = tmp_path_factory.mktemp("openwebui")
    with (
        RecordingRelay(local_deployment.base_url) as relay,
        running(
            venv,
            data_dir,
            free_port(),
            openai_base_url=f"http://127.0.0.1:{relay.port}/v1",
            openai_api_key=local_deployment.api_key,
        ) as process,
    ):
        # The first account on a fresh OpenWebUI becomes its admin.
        answer = httpx.post(
            f"{process.base_url}/api/v1/auths/signup",
            json={"name": "Lab Admin", "email": "admin@lab.example", "password": secrets.token_urlsafe(18)},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["role"] == "admin"
        yield OpenWebUI(process, relay, answer.json()["token"])


def test_runs_the_pinned_release(openwebui: OpenWebUI) -> None:
    answer = openwebui.api("GET", "/api/version")
    assert answer.status_code == 200
    assert answer.json()["version"] == pinned_version()


def test_lists_the_served_model(openwebui: OpenWebUI, local_deployment: LocalDeployment) -> None:
    answer = openwebui.api("GET", "/api/models", params={"refresh": "true"})
    assert answer.status_code == 200, answer.text
    models = {model["id"]: model for model in answer.json()["data"]}
    assert local_deployment.model in models, sorted(models)
    assert models[local_deployment.model]["owned_by"] == "openai"
    listings = [e for e in openwebui.relay.snapshot() if e.method == "GET" and e.path == "/v1/models"]
    assert listings and all(e.status == 200 for e in listings)
