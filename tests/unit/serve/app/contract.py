"""Validate bodies against OpenAI's published contract (`tests/contract/openai-openapi.reduced.json`)."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

_CONTRACT_URI = "urn:openai-openapi"


def contract_errors(contract: dict[str, Any], schema_name: str, instance: Any) -> list[str]:
    """Every way `instance` breaks `components.schemas.<schema_name>` of OpenAI's contract (empty when it fits)."""
    registry = Registry().with_resource(_CONTRACT_URI, Resource(contents=contract, specification=DRAFT202012))
    validator = Draft202012Validator({"$ref": f"{_CONTRACT_URI}#/components/schemas/{schema_name}"}, registry=registry)
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(instance)]
