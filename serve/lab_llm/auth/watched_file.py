"""A YAML file read again whenever it changes on disk (Kubernetes updates mounted Secrets by swapping a symlink)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

import yaml

Parsed = TypeVar("Parsed")


class WatchedYamlFile(Generic[Parsed]):
    """Keeps the parsed content of a YAML file, re-parsing when its stat signature changes."""

    def __init__(self, path: Path, parse: Callable[[object], Parsed]) -> None:
        self.path = path
        self._parse = parse
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._value: Parsed | None = None

    def _current_signature(self) -> tuple[int, int, int]:
        stat = os.stat(self.path)
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def get(self) -> Parsed:
        signature = self._current_signature()
        if signature != self._signature or self._value is None:
            with self._lock:
                if signature != self._signature or self._value is None:
                    text = self.path.read_text(encoding="utf-8")
                    self._value = self._parse(yaml.safe_load(text) or {})
                    self._signature = signature
        return self._value
