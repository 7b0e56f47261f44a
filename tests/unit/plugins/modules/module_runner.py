"""Runs a module's main() in-process with given arguments, as Ansible would, and returns what it answered."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args


class ModuleExit(Exception):
    """exit_json/fail_json were called; carries the result."""

    def __init__(self, result: dict, failed: bool) -> None:
        super().__init__(result)
        self.result = result
        self.failed = failed


def run_module(monkeypatch: pytest.MonkeyPatch, main: Callable[[], None], args: dict[str, Any]) -> ModuleExit:
    def exit_json(_module: Any, **result: Any) -> None:
        raise ModuleExit(result, failed=False)

    def fail_json(_module: Any, **result: Any) -> None:
        raise ModuleExit(result, failed=True)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    with patch_module_args(args), pytest.raises(ModuleExit) as outcome:
        main()
    # What Ansible would send over the wire must be plain JSON.
    json.dumps(outcome.value.result)
    return outcome.value
