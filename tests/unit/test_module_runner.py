"""The in-process module runner gives each run the state of a fresh module process, whatever ran before it."""

from __future__ import annotations

import pytest
from ansible.module_utils.basic import AnsibleModule

from tests.module_runner import run_module, run_module_result


def warn_then_exit() -> None:
    """A module that warns when given `message`, then exits unchanged."""
    module = AnsibleModule(argument_spec={"message": {"type": "str"}}, supports_check_mode=True)
    if module.params["message"]:
        module.warn(module.params["message"])
        module.deprecate("old " + module.params["message"], version="9.9.9", collection_name="lab.llm")
    module.exit_json(changed=False)


def messages(result: dict) -> list[str]:
    # ansible-core 2.19 returns warnings as summaries with the message in event.msg.
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]


def test_a_run_reports_only_its_own_warnings_and_deprecations() -> None:
    first = run_module(warn_then_exit, {"message": "first"})
    assert messages(first) == ["first"]
    assert len(first["deprecations"]) == 1
    second = run_module(warn_then_exit, {})
    assert "warnings" not in second, second
    assert "deprecations" not in second, second


def test_a_run_after_controller_code_was_imported_still_reports_its_warnings() -> None:
    """Importing Ansible's controller side (here its templating) marks the whole process as the controller."""
    import ansible.template  # noqa: F401  # pylint: disable=unused-import

    assert messages(run_module(warn_then_exit, {"message": "still mine"})) == ["still mine"]


def test_a_run_whose_exit_is_caught_leaves_nothing_for_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    """Warnings given in a run whose exit_json a test replaced were never sent; they must not reach a later run."""
    assert not run_module_result(monkeypatch, warn_then_exit, {"message": "unsent"}).failed
    monkeypatch.undo()
    assert "warnings" not in run_module(warn_then_exit, {})
