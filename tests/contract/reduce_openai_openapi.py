"""Reduce OpenAI's published OpenAPI document to the four operations lab-llm serves.

Usage: python tests/contract/reduce_openai_openapi.py openapi.json COMMIT > tests/contract/openai-openapi.reduced.json

`openapi.json` is the file of that name in the openai/openai-openapi repository at COMMIT. The result keeps the
operations `listModels`, `retrieveModel`, `createChatCompletion` and `createCompletion` with every schema they
reference (transitively), and drops documentation-only keys (`x-oaiMeta`, examples) to stay small.
"""

from __future__ import annotations

import json
import sys
from typing import Any

OPERATIONS = {
    ("/models", "get"),
    ("/models/{model}", "get"),
    ("/chat/completions", "post"),
    ("/completions", "post"),
}
_DOCUMENTATION_KEYS = {"x-oaiMeta", "example", "examples"}


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _strip(value) for key, value in node.items() if key not in _DOCUMENTATION_KEYS}
    if isinstance(node, list):
        return [_strip(item) for item in node]
    return node


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node)) if node else set()
    return set()


def reduce_document(document: dict[str, Any], commit: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, method in sorted(OPERATIONS):
        paths.setdefault(path, {})[method] = _strip(document["paths"][path][method])
    components: dict[str, dict[str, Any]] = {}
    pending = _refs(paths)
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, _, section, name = ref.split("/", 3)
        target = _strip(document["components"][section][name])
        components.setdefault(section, {})[name] = target
        pending |= _refs(target)
    return {
        "openapi": document["openapi"],
        "info": {
            **document["info"],
            "x-lab-llm-source": f"openai/openai-openapi openapi.json at commit {commit}, reduced to "
            + ", ".join(f"{method.upper()} {path}" for path, method in sorted(OPERATIONS)),
        },
        "servers": document.get("servers", []),
        "security": document.get("security", []),
        "paths": paths,
        "components": {
            **{section: dict(sorted(items.items())) for section, items in sorted(components.items())},
            "securitySchemes": document["components"].get("securitySchemes", {}),
        },
    }


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as source:
        json.dump(reduce_document(json.load(source), sys.argv[2]), sys.stdout, indent=1, sort_keys=False)
        sys.stdout.write("\n")
