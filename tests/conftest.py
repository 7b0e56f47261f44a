"""Shared pytest fixtures: paths of the repository and of the reference data beside it."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

# ansible-core swaps sys.intern for a patch object once its module_utils load, and torch._dynamo (which vLLM
# imports) then refuses to register its polyfill for it. Loading torch's compiler first keeps both importable
# in one test session.
with contextlib.suppress(ImportError):  # a checkout without the engine installed
    import torch._dynamo  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parent.parent
COLLECTION_ROOT = REPO_ROOT / "collections" / "ansible_collections" / "lab" / "llm"
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    """../shared/reference, or skip: a user's own checkout does not have it."""
    reference = SHARED_DIR / "reference"
    if not reference.is_dir():
        pytest.skip(f"reference data not found at {reference} (only developer checkouts and CI have ../shared)")
    return reference
