"""Stop every process of one Ray + vLLM stack started without systemd, orphans included.

A stack is marked when it starts: ``ray start`` runs with ``LAB_LLM_STACK=<id>`` in its environment (the
``ray_node`` role's process path uses the node's Ray temp dir as the id). Ray's daemons, the workers the raylet
starts and the processes vLLM spawns (``VLLM::EngineCore``, ``VLLM::Worker``) all inherit it. Neither a process
tree nor a process group finds them all: vLLM's processes rename themselves and are re-parented to PID 1 when their
replica dies, and Ray starts its daemons in sessions of their own. The environment marker survives both.
(systemd units get the same guarantee from the unit's control group: ``KillMode=control-group``.)

Linux only (``/proc``). Processes of other users are skipped: their environment is not readable.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

STACK_ENV = "LAB_LLM_STACK"
PROC = Path("/proc")


@dataclass
class StopReport:
    """What `stop_stack` did: PIDs that ended on SIGTERM, PIDs that needed SIGKILL, PIDs still alive after it."""

    terminated: list[int] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)
    survivors: list[int] = field(default_factory=list)


def stack_pids(stack: str) -> list[int]:
    """PIDs of the live processes whose environment has ``LAB_LLM_STACK=<stack>`` (never this process)."""
    marker = f"{STACK_ENV}={stack}".encode()
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environment = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # ended meanwhile, or another user's
            continue
        if state != "Z" and marker in environment.split(b"\0"):
            found.append(int(entry.name))
    return sorted(found)


def process_title(pid: int) -> str:
    """The command line as ``ps`` shows it (vLLM's processes set theirs to ``VLLM::EngineCore`` and so on)."""
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22), None once it is gone or a
    zombie. With the PID it names one process: a PID reused later has another start time."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def _signal_all(pids: dict[int, int | None], signum: int) -> None:
    for pid, started in pids.items():
        if _start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)


def _alive(stack: str, known: dict[int, int | None]) -> dict[int, int | None]:
    """The stack's processes: those carrying the marker, and those found before that still run. A process that is
    exiting has no readable environment any more, but it still holds its memory and its core until it is gone."""
    alive: dict[int, int | None] = {
        pid: started for pid, started in known.items() if started is not None and _start_time(pid) == started
    }
    for pid in stack_pids(stack):
        alive.setdefault(pid, _start_time(pid))
    return {pid: started for pid, started in alive.items() if started is not None}


def _wait_gone(stack: str, known: dict[int, int | None], timeout_s: float) -> dict[int, int | None]:
    deadline = time.monotonic() + timeout_s
    alive = _alive(stack, known)
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = _alive(stack, {**known, **alive})
    return alive


def stop_stack(stack: str, grace_s: float = 10.0) -> StopReport:
    """SIGTERM to every process of the stack, SIGKILL to those still alive after ``grace_s`` seconds; returns when
    every one of them has ended (not only lost its environment while exiting).

    Processes the stack starts while it stops (a raylet restarting a worker) are found and signalled too.
    ``survivors`` is empty unless a process ignores SIGKILL (uninterruptible sleep).
    """
    report = StopReport()
    first = _alive(stack, {})
    if not first:
        return report
    _signal_all(first, signal.SIGTERM)
    remaining = _wait_gone(stack, first, grace_s)
    report.terminated = sorted(set(first) - set(remaining))
    for _attempt in range(3):
        if not remaining:
            break
        _signal_all(remaining, signal.SIGKILL)
        report.killed = sorted(set(report.killed) | set(remaining))
        remaining = _wait_gone(stack, remaining, 5.0)
    report.survivors = sorted(remaining)
    return report
