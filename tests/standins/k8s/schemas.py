"""Validators the stand-in applies to every object written: upstream schemas, unknown fields rejected.

- Core kinds: the OpenAPI-derived JSON schemas bundled with `kubernetes-validate` for KUBERNETES_VERSION, in
  their `-strict` flavour (additionalProperties: false everywhere), i.e. what the API server accepts.
- Custom resources: the CRD's `openAPIV3Schema`, made strict the way a structural schema behaves: an object with
  `properties` and no `x-kubernetes-preserve-unknown-fields` accepts no other key (the API server would prune it
  silently; here it is an error so a typo in a rendered manifest fails the test).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

KUBERNETES_VERSION = "1.33"
CRD_DIR = Path(__file__).parent / "crds"


def strict_crd_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema from a CRD openAPIV3Schema: unknown keys forbidden, int-or-string and nullable honoured."""

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {key: walk(value) for key, value in node.items() if key != "description"}
        if node.pop("x-kubernetes-int-or-string", False):
            node.pop("type", None)
            node["anyOf"] = [*node.get("anyOf", []), {"type": "integer"}, {"type": "string"}]
        if node.pop("nullable", False) and "type" in node:
            node["type"] = [node["type"], "null"]
        preserve = node.pop("x-kubernetes-preserve-unknown-fields", False)
        if (
            node.get("type") == "object"
            and "properties" in node
            and "additionalProperties" not in node
            and not preserve
        ):
            node["additionalProperties"] = False
        return node

    strict = walk(copy.deepcopy(schema))
    # metadata is ObjectMeta, checked by the server itself; CRDs may only constrain `name`.
    name_rule = schema.get("properties", {}).get("metadata", {}).get("properties", {}).get("name")
    strict.setdefault("properties", {})["metadata"] = {"type": "object"}
    if name_rule:
        strict["properties"]["metadata"]["properties"] = {"name": walk(name_rule)}
    return strict


@functools.cache
def served_versions(path: Path) -> tuple[tuple[dict[str, Any], dict[str, Any], jsonschema.Validator], ...]:
    """(CRD spec, version entry, strict validator) for each served version of each CRD in a file, parsed once."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    found = []
    for crd in yaml.load_all(path.read_text(encoding="utf-8"), Loader=loader):
        if not crd:
            continue
        for version in crd["spec"]["versions"]:
            if version.get("served", True):
                found.append((crd["spec"], version, crd_validator(version["schema"]["openAPIV3Schema"])))
    return tuple(found)


@functools.cache
def _core_registry() -> tuple[Path, Registry]:
    base = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    directory = Path(str(base)) / (f"v{KUBERNETES_VERSION}.0-local-strict")
    definitions = json.loads((directory / "_definitions.json").read_text(encoding="utf-8"))
    return directory, Resource.from_contents(definitions) @ Registry()


@functools.cache
def core_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    """kubernetes-validate's naming: apps/v1 Deployment -> deployment-apps-v1.json, v1 Service -> service-v1.json."""
    directory, registry = _core_registry()
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = json.loads((directory / (f"{kind.lower()}-{group_version}.json")).read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema, registry=Resource.from_contents(schema) @ registry)


def crd_validator(openapi_schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(strict_crd_schema(openapi_schema))


def problems(validator: jsonschema.Validator, obj: dict[str, Any]) -> list[tuple[str, str]]:
    """(field path, message) for each violation, paths dotted like the API server's causes."""
    found = []
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        path = ".".join(str(part) for part in error.absolute_path)
        found.append((path or "(root)", error.message))
    return found
