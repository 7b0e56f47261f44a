# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors raised by the Proxmox VE client; each message names the object it is about."""

from __future__ import annotations


class PveError(Exception):
    """A Proxmox VE operation failed; str() is a complete message for fail_json."""


class PveInputError(PveError):
    """The module's input is wrong; raised before anything is written."""


class PveApiError(PveError):
    """The API answered with an HTTP error (status, Proxmox reason, per-parameter errors)."""

    def __init__(self, method: str, path: str, status: int, reason: str, errors: dict | None = None) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.reason = reason
        self.errors = errors or {}
        detail = "; ".join("%s: %s" % (name, text) for name, text in sorted(self.errors.items()))
        message = "%s %s failed with HTTP %s: %s" % (method, path, status, reason.strip())
        super().__init__(message + (" (%s)" % detail if detail else ""))


class PveTaskError(PveError):
    """A Proxmox task (UPID) stopped with an exit status other than OK, or did not stop in time."""

    def __init__(self, node: str, upid: str, exitstatus: str, log_tail: list[str]) -> None:
        self.node = node
        self.upid = upid
        self.exitstatus = exitstatus
        self.log_tail = log_tail
        tail = " | ".join(log_tail)
        super().__init__(
            "task %s on node %s failed: %s%s" % (upid, node, exitstatus, (" (log: %s)" % tail) if tail else "")
        )
