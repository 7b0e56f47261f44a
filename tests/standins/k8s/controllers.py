"""Controllers played by tests: Deckhouse CAPS for StaticInstances, KubeRay + Ray Serve for RayServices.

They only write status the way the real controllers do (phases from the StaticInstance CRD's description; RayService
status fields from its CRD), driven by `on_write` hooks and timers.
"""

from __future__ import annotations

from typing import Any

from tests.standins.k8s.fixtures import later
from tests.standins.k8s.server import KubeApiStandIn

CAPS = "deckhouse.io/v1alpha2"
RAY = "ray.io/v1"


def play_caps(api: KubeApiStandIn, stop_at: str = "Running") -> None:
    """CAPS: a new labelled StaticInstance goes Pending -> Bootstrapping -> Running and its Node registers Ready;
    one whose label was removed goes Cleaning -> Pending."""

    def react(event: str, kind: Any, obj: dict[str, Any]) -> None:
        if kind.kind != "StaticInstance" or event == "DELETED":
            return
        name = obj["metadata"]["name"]
        labelled = "lab-llm.io/node-group" in (obj["metadata"].get("labels") or {})
        phase = (obj.get("status") or {}).get("currentStatus", {}).get("phase")

        def phase_to(new: str, **status: Any) -> None:
            api.set_status(CAPS, "StaticInstance", name, {"currentStatus": {"phase": new}, **status})

        if event == "ADDED":
            later(0.05, lambda: phase_to("Pending"))
        elif labelled and phase == "Pending" and stop_at != "Pending":
            later(0.05, lambda: phase_to("Bootstrapping"))
        elif labelled and phase == "Bootstrapping" and stop_at == "Running":

            def join() -> None:
                api.put(
                    {
                        "apiVersion": "v1",
                        "kind": "Node",
                        "metadata": {"name": name},
                        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]},
                    }
                )
                phase_to("Running", nodeRef={"name": name})

            later(0.05, join)
        elif not labelled and phase == "Running":
            later(0.05, lambda: phase_to("Cleaning"))
        elif not labelled and phase == "Cleaning":
            later(0.05, lambda: phase_to("Pending"))

    api.on_write.append(react)


def running_status(generation: int, cluster: str, app: str = "RUNNING", message: str = "") -> dict[str, Any]:
    return {
        "observedGeneration": generation,
        "serviceStatus": "Running" if app == "RUNNING" else "",
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if app == "RUNNING" else "False",
                "reason": "x",
                "message": "",
                "lastTransitionTime": "2026-11-25T00:00:00Z",
            }
        ],
        "activeServiceStatus": {
            "rayClusterName": cluster,
            "applicationStatuses": {"llm": {"status": app, "message": message}},
        },
    }


def play_kuberay(api: KubeApiStandIn, outcome: str = "RUNNING", message: str = "") -> None:
    """KubeRay + Ray Serve: each new generation of the RayService gets a RayCluster whose app ends in `outcome`;
    later generations go through an upgrade (pending cluster) first."""

    def react(event: str, kind: Any, obj: dict[str, Any]) -> None:
        if kind.kind != "RayService" or event == "DELETED":
            return
        generation = obj["metadata"]["generation"]
        if (obj.get("status") or {}).get("observedGeneration") == generation:
            return
        name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
        cluster = f"{name}-raycluster-g{generation}"

        def set_status(status: dict[str, Any]) -> None:
            api.set_status(RAY, "RayService", name, status, namespace)

        if generation == 1:
            later(0.1, lambda: set_status(running_status(1, cluster, outcome, message)))
            return
        previous = f"{name}-raycluster-g{generation - 1}"
        upgrading = running_status(generation, previous)
        upgrading["conditions"].append(
            {
                "type": "UpgradeInProgress",
                "status": "True",
                "reason": "x",
                "message": "",
                "lastTransitionTime": "2026-11-25T00:00:00Z",
            }
        )
        upgrading["pendingServiceStatus"] = {
            "rayClusterName": cluster,
            "applicationStatuses": {"llm": {"status": "DEPLOYING"}},
        }
        later(0.1, lambda: set_status(upgrading))
        later(0.6, lambda: set_status(running_status(generation, cluster, outcome, message)))

    api.on_write.append(react)
