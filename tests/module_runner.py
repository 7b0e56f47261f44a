"""Runs a module's main() in-process, as Ansible runs it in a process of its own, and returns what it answered.

Ansible starts every module run in a fresh Python process on the target, so module-global state starts as a
module process has it each time. In one test process it does not:
- ansible.module_utils keeps the warnings and deprecations of a run in module globals
  (`ansible.module_utils.common.warnings`) and the parsed arguments in `basic._PARSED_MODULE_ARGS`, and exit_json
  sends whatever is there;
- importing any controller code (`ansible.template`, `ansible.parsing`, ... through `ansible._internal`) sets
  `ansible.module_utils._internal.is_controller` for the whole process, and from then on a module's warnings go to
  the controller's display instead of its result, and its JSON is encoded the controller's way.
`fresh_module_process` gives each run a module process's state and puts back what was there afterwards, so a run
neither sees an earlier run's warnings nor leaves its own for a later one, whatever ran before it in the session.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from ansible.module_utils import _internal as module_internal
from ansible.module_utils import basic
from ansible.module_utils.common import warnings as module_warnings
from ansible.module_utils.testing import patch_module_args


@contextlib.contextmanager
def fresh_module_process(args: dict[str, Any]) -> Iterator[None]:
    """The module-global state of a new module process: these arguments, no warnings, no deprecations, not the
    controller."""
    with (
        patch_module_args(args),
        mock.patch.object(module_internal, "is_controller", False),
        mock.patch.object(basic, "_PARSED_MODULE_ARGS", None),
        mock.patch.dict(module_warnings._global_warnings, clear=True),
        mock.patch.dict(module_warnings._global_deprecations, clear=True),
    ):
        yield


def run_module(main: Callable[[], None], args: dict[str, Any], check_mode: bool = False) -> dict[str, Any]:
    """Run a module's main() in-process; return the JSON it printed, as Ansible reads it (`failed` when it failed).

    The result has passed through exit_json/fail_json as in a real run: no_log values masked, the run's warnings
    under `warnings`, the arguments under `invocation`.
    """
    printed: list[str] = []
    if check_mode:
        args = dict(args, _ansible_check_mode=True)
    args = dict(args, _ansible_diff=True)
    with (
        fresh_module_process(args),
        mock.patch("ansible.module_utils.basic.print", create=True, side_effect=lambda text: printed.append(text)),
        pytest.raises(SystemExit),
    ):
        main()
    return json.loads(printed[-1])


class ModuleExit(Exception):
    """exit_json/fail_json were called; carries the result as the module passed it."""

    def __init__(self, result: dict, failed: bool) -> None:
        super().__init__(result)
        self.result = result
        self.failed = failed


def run_module_result(monkeypatch: pytest.MonkeyPatch, main: Callable[[], None], args: dict[str, Any]) -> ModuleExit:
    """Run a module's main() in-process; return what it passed to exit_json/fail_json, before Ansible's processing.

    For tests that compare the module's own values (types included); `run_module` shows what Ansible receives.
    """

    def exit_json(_module: Any, **result: Any) -> None:
        raise ModuleExit(result, failed=False)

    def fail_json(_module: Any, **result: Any) -> None:
        raise ModuleExit(result, failed=True)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    with fresh_module_process(args), pytest.raises(ModuleExit) as outcome:
        main()
    # What Ansible would send over the wire must be plain JSON.
    json.dumps(outcome.value.result)
    return outcome.value
