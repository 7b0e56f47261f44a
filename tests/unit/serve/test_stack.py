"""`lab-llm stop-stack`: every process that inherited the stack's marker ends, orphans and SIGTERM-ignorers included;
other processes are left alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from typer.testing import CliRunner

from lab_llm.cli import app
from lab_llm.stack import process_title, stack_pids, stop_stack

# A parent that starts a child ignoring SIGTERM (as vLLM's engine processes did for seconds) in a session of its own;
# once the parent is gone the child is an orphan of PID 1, outside the parent's tree and process group.
ORPHAN_MAKER = """
import os, signal, subprocess, sys, time
child = '''
import signal, time, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(600)
'''
subprocess.Popen([sys.executable, "-c", child], start_new_session=True, stdout=sys.stdout)
time.sleep(600)
"""


def start(stack: str | None) -> subprocess.Popen[str]:
    env = {name: value for name, value in os.environ.items() if name != "LAB_LLM_STACK"}
    if stack:
        env["LAB_LLM_STACK"] = stack
    process = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_MAKER], env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def wait_for(condition, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert condition()


def test_stop_ends_every_marked_process_orphans_and_term_ignorers_included() -> None:
    stack = f"unit-{uuid.uuid4().hex[:8]}"
    bystander = start(None)
    parent = start(stack)
    try:
        wait_for(lambda: len(stack_pids(stack)) == 2)
        child = next(pid for pid in stack_pids(stack) if pid != parent.pid)
        parent.kill()  # the child is now an orphan
        parent.wait()
        wait_for(lambda: stack_pids(stack) == [child])
        report = stop_stack(stack, grace_s=1.0)
        assert report.killed == [child] and report.survivors == []
        assert not Path(f"/proc/{child}").exists() or process_title(child) == ""
        assert stack_pids(stack) == []
        assert bystander.poll() is None, "a process without the marker was stopped"
    finally:
        bystander.kill()
        stop_stack(stack, grace_s=0.5)


def test_the_cli_reports_what_it_stopped_as_json() -> None:
    stack = f"unit-{uuid.uuid4().hex[:8]}"
    parent = start(stack)
    try:
        wait_for(lambda: len(stack_pids(stack)) == 2)
        result = CliRunner().invoke(app, ["stop-stack", stack, "--grace-s", "1", "--json"])
        assert result.exit_code == 0, result.output
        payload = json.loads(result.output)
        assert payload["changed"] is True and payload["survivors"] == []
        assert parent.pid in payload["terminated"]
        assert len(payload["killed"]) == 1
        again = CliRunner().invoke(app, ["stop-stack", stack, "--json"])
        assert json.loads(again.output) == {"changed": False, "terminated": [], "killed": [], "survivors": []}
    finally:
        stop_stack(stack, grace_s=0.5)
