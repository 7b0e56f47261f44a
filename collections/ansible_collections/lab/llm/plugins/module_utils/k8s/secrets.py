# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secret values in Kubernetes objects: read one, build an Opaque Secret, and hide them from output and diffs."""

from __future__ import annotations

import base64
import copy
from typing import Any, overload

REDACTED = "<redacted>"
# Where objects the collection writes carry secrets: a Secret's values (v1 Secret: data is base64, stringData
# plain text), and Deckhouse SSHCredentials' key and sudo password (modules/040-node-manager/crds/
# sshcredentials.yaml: spec.privateSSHKey, spec.sudoPassword in v1alpha1, spec.sudoPasswordEncoded in v1alpha2).
_SECRET_SPEC_FIELDS = {"SSHCredentials": ("privateSSHKey", "sudoPassword", "sudoPasswordEncoded")}


@overload
def redacted(obj: dict[str, Any]) -> dict[str, Any]: ...


@overload
def redacted(obj: None) -> None: ...


def redacted(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """A deep copy of ``obj`` with every secret value replaced by ``<redacted>`` (the keys stay, so a diff still
    says which entries changed); None stays None, objects of other kinds come back as they are."""
    if obj is None:
        return None
    shown = copy.deepcopy(obj)
    if shown.get("kind") == "Secret":
        for section in ("data", "stringData"):
            if shown.get(section):
                shown[section] = {key: REDACTED for key in shown[section]}
    spec = shown.get("spec") or {}
    for field in _SECRET_SPEC_FIELDS.get(shown.get("kind") or "", ()):
        if field in spec:
            spec[field] = REDACTED
    return shown


def holds_secrets(kind: str) -> bool:
    """Whether objects of ``kind`` carry secret values (a Secret, Deckhouse SSHCredentials)."""
    return kind == "Secret" or kind in _SECRET_SPEC_FIELDS


def secret_text(secret: dict[str, Any] | None, key: str) -> str | None:
    """The UTF-8 text under ``data[key]`` of a Secret object, or None when the Secret or the key is absent."""
    encoded = ((secret or {}).get("data") or {}).get(key)
    return base64.b64decode(encoded).decode("utf-8") if encoded else None


def opaque_secret(name: str, namespace: str, values: dict[str, str]) -> dict[str, Any]:
    """An Opaque Secret manifest holding ``values`` (text, base64-encoded into ``data``), labelled as lab-llm's.
    With no values it has no ``data`` at all: a stub that names the Secret without carrying anything."""
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "lab-llm"}},
    }
    if values:
        manifest["data"] = {
            key: base64.b64encode(value.encode("utf-8")).decode("ascii") for key, value in values.items()
        }
    return manifest
