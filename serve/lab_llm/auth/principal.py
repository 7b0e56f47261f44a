"""The authenticated caller of a request."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal


@dataclass(frozen=True)
class Principal:
    subject: str
    role: str
    scopes: frozenset[str]
    model_patterns: tuple[str, ...]
    credential: Literal["access_token", "api_key"]

    def may_use_model(self, model: str) -> bool:
        return any(fnmatchcase(model, pattern) for pattern in self.model_patterns)
