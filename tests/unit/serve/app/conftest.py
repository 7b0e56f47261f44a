"""Fixtures of the in-process app tests (see `gated_app.py`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.serve.app.gated_app import CONTRACT_FILE, GatedApp, build_gated_app


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[GatedApp]:
    return build_gated_app(tmp_path)


@pytest.fixture(scope="session")
def openai_contract() -> dict[str, Any]:
    return json.loads(CONTRACT_FILE.read_text())
