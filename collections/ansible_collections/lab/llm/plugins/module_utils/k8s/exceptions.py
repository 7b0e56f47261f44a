# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors that name the Kubernetes object (kind, namespace/name) and, when known, the field."""

from __future__ import annotations


def object_ref(kind: str, name: str, namespace: str | None = None) -> str:
    """`Kind namespace/name` (or `Kind name` for cluster-scoped objects)."""
    return "%s %s" % (kind, "%s/%s" % (namespace, name) if namespace else name)


class K8sError(Exception):
    """A Kubernetes call failed or returned something unusable."""

    def __init__(
        self,
        message: str,
        kind: str | None = None,
        name: str | None = None,
        namespace: str | None = None,
        field: str | None = None,
        status: int | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.kind = kind
        self.name = name
        self.namespace = namespace
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = []
        if self.kind:
            parts.append(object_ref(self.kind, self.name or "?", self.namespace))
        if self.field:
            parts.append(self.field)
        prefix = ": ".join(parts)
        return "%s: %s" % (prefix, self.message) if prefix else self.message


class WaitTimeout(K8sError):
    """The object did not reach the wanted state in time."""


class WaitFailed(K8sError):
    """The object reached a state it will not recover from by waiting."""
