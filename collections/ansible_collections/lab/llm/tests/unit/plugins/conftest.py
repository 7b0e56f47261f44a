"""Fixtures shared by the plugin tests (modules and module_utils)."""

from __future__ import annotations

import pytest
from ansible.module_utils import basic


@pytest.fixture
def warnings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The warnings a module gives through AnsibleModule.warn."""
    seen: list[str] = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda _module, message: seen.append(message))
    return seen
