"""Fixtures of the in-process app tests (see `gated_app.py`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.serve.test_engine_contract import contract_problem

# Every module here imports lab_llm.app; when an upgrade of Ray or vLLM moved a name it takes from them, collecting
# them stops the run with an ImportError: let it carry the contract's message, which says what to change where.
if (problem := contract_problem()) is not None:
    raise ImportError(problem)

from tests.unit.serve.app.gated_app import CONTRACT_FILE, GatedApp, build_gated_app


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[GatedApp]:
    return build_gated_app(tmp_path)


@pytest.fixture(scope="session")
def openai_contract() -> dict[str, Any]:
    return json.loads(CONTRACT_FILE.read_text())
