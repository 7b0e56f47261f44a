"""Stage 7 for real against the Kubernetes API stand-in: the openwebui role applies its objects, gets an API key
from (a test double of) lab-llm, waits for the Deployment, and a second run changes nothing. A key the endpoint
stops accepting is replaced and the Deployment restarted by the handler."""

from __future__ import annotations

import base64
import subprocess
from typing import Any

import pytest

from tests.standins.k8s import fixtures
from tests.standins.k8s.fixtures import run_playbook
from tests.standins.k8s.lab_llm_app import FakeLabLlm, running_app
from tests.standins.k8s.server import KubeApiStandIn

pytestmark = pytest.mark.playbook
kube_api = fixtures.kube_api
app = running_app


def play_deployment_controller(api: KubeApiStandIn) -> None:
    """The Deployment controller: every new generation becomes available at once."""

    def react(event: str, kind: Any, obj: dict[str, Any]) -> None:
        if kind.kind != "Deployment" or event == "DELETED":
            return
        generation = obj["metadata"]["generation"]
        if (obj.get("status") or {}).get("observedGeneration") != generation:
            replicas = obj["spec"].get("replicas", 1)
            fixtures.later(
                0.05,
                lambda: api.set_status(
                    "apps/v1",
                    "Deployment",
                    obj["metadata"]["name"],
                    {
                        "observedGeneration": generation,
                        "replicas": replicas,
                        "updatedReplicas": replicas,
                        "availableReplicas": replicas,
                    },
                    obj["metadata"]["namespace"],
                ),
            )

    api.on_write.append(react)


def run_stage(app: FakeLabLlm) -> subprocess.CompletedProcess[str]:
    return run_playbook(
        "playbooks/openwebui.yml",
        "-i",
        "inventory/local",
        "-e",
        "lab_llm_kubernetes=true",
        "-e",
        f"openwebui_endpoint_url={app.url}",
        "-e",
        "openwebui_admin_username=admin",
        "-e",
        "openwebui_admin_password=s3cret",
        "-e",
        "openwebui_ingress_host=chat.lab.example",
        "-e",
        "openwebui_wait_timeout=10",
    )


def recap(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return next(line for line in result.stdout.splitlines() if line.startswith("localhost "))


def test_openwebui_stage_applies_then_changes_nothing(kube_api: KubeApiStandIn, app: FakeLabLlm) -> None:
    play_deployment_controller(kube_api)
    first = recap(run_stage(app))
    assert "failed=0" in first
    assert "changed=0" not in first
    deployment = kube_api.get("apps/v1", "Deployment", "openwebui", "openwebui")
    env = {item["name"]: item for item in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["OPENAI_API_BASE_URL"]["value"] == "http://lab-llm-serve-svc.lab-llm.svc:8000/v1"
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "openwebui-openai"
    secret = kube_api.get("v1", "Secret", "openwebui-openai", "openwebui")
    key = base64.b64decode(secret["data"]["OPENAI_API_KEY"]).decode()
    assert [entry["key"] for entry in app.keys.values()] == [key]
    assert kube_api.get("networking.k8s.io/v1", "Ingress", "openwebui", "openwebui")["spec"]["rules"][0]["host"] == (
        "chat.lab.example"
    )

    second = recap(run_stage(app))
    assert "changed=0" in second
    assert "failed=0" in second

    for entry in app.keys.values():
        entry["key"] = "revoked"
    third = run_stage(app)
    assert "failed=0" in recap(third)
    assert "RUNNING HANDLER [lab.llm.openwebui : Restart OpenWebUI]" in third.stdout
    restarted = kube_api.get("apps/v1", "Deployment", "openwebui", "openwebui")
    assert "lab-llm.io/api-key-rotated-at" in restarted["spec"]["template"]["metadata"].get("annotations", {})
    rotated = base64.b64decode(
        kube_api.get("v1", "Secret", "openwebui-openai", "openwebui")["data"]["OPENAI_API_KEY"]
    ).decode()
    assert rotated != key
    # lab-llm now knows only the new key, so the restarted pods must use it: their env is authoritative because
    # OpenWebUI's persistent config is off (else it keeps the key stored in its database at first start).
    assert [entry["key"] for entry in app.keys.values()] == [rotated]
    env = {item["name"]: item for item in restarted["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ENABLE_PERSISTENT_CONFIG"]["value"] == "false"
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "openwebui-openai"
