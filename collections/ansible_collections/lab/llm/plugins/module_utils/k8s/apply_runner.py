# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The flow of lab.llm.k8s_apply: check every manifest, then apply (or delete) them in order, or write them out.

Every manifest is checked before the first write; in check mode the cluster answers as a server dry run and no file
is written. Secret values never reach the result or the diff.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from ansible_collections.lab.llm.plugins.module_utils.files import read_text, write_atomically
from ansible_collections.lab.llm.plugins.module_utils.k8s.client import connect
from ansible_collections.lab.llm.plugins.module_utils.k8s.exceptions import K8sError, object_ref
from ansible_collections.lab.llm.plugins.module_utils.k8s.secrets import REDACTED, holds_secrets, redacted
from ansible_collections.lab.llm.plugins.module_utils.k8s.service import K8sService

SECRET_FILE_MODE = 0o600  # a rendered Secret (or SSHCredentials) holds its values in the clear; base64 hides nothing
MANIFEST_FILE_MODE = 0o644


class ApplyError(Exception):
    """A manifest is malformed, or applying or writing one failed; ``result`` holds what was done before
    (``objects``, and ``files`` in render mode) for the module's failure."""

    def __init__(self, message: str, **result: Any) -> None:
        super().__init__(message)
        self.result = result


def manifest_problems(manifests: list[dict[str, Any]]) -> list[str]:
    """One message per manifest that lacks ``apiVersion``, ``kind`` or ``metadata.name``."""
    problems: list[str] = []
    for index, manifest in enumerate(manifests):
        metadata = manifest.get("metadata") or {}
        missing = [key for key in ("apiVersion", "kind") if not manifest.get(key)]
        if not metadata.get("name"):
            missing.append("metadata.name")
        if missing:
            problems.append("manifests[%d] (%s) lacks %s" % (index, manifest.get("kind", "?"), ", ".join(missing)))
    return problems


def secret_values(manifests: list[dict[str, Any]]) -> set[str]:
    """The values of every Secret's ``data`` and ``stringData``: what the module must never log or return."""
    values: set[str] = set()
    for manifest in manifests:
        if manifest.get("kind") == "Secret":
            for section in ("data", "stringData"):
                values.update(str(value) for value in (manifest.get(section) or {}).values() if value)
    return values


class ApplyRunner:
    """Brings the manifests of the module's options to ``state``, or writes them below ``render_dir``.

    ``params`` are the module's (``manifests``, ``state``, ``render_dir``, ``render_prefix`` and the connection
    options); ``atomic_move`` is the module's AnsibleModule.atomic_move. ``warnings`` are the cluster's, for the
    module to show once the run succeeded.
    """

    def __init__(self, params: dict[str, Any], check_mode: bool, atomic_move: Callable[[str, str], None]) -> None:
        self.params = params
        self.check_mode = check_mode
        self.atomic_move = atomic_move
        self.warnings: list[str] = []

    def run(self) -> dict[str, Any]:
        """The module result: ``changed``, ``objects`` (``object``, ``changed``, and ``file`` in render mode),
        ``diff`` (per object or file, Secret data redacted) and, in render mode, ``files``.

        Raises ApplyError before any write when a manifest is malformed, and when a call or a write fails.
        """
        manifests = self.params["manifests"]
        problems = manifest_problems(manifests)
        if problems:
            raise ApplyError("; ".join(problems))
        if self.params["render_dir"]:
            return self.render(manifests)
        return self.apply(manifests)

    def apply(self, manifests: list[dict[str, Any]]) -> dict[str, Any]:
        """Server-side apply (``state=present``) or delete each manifest in order, as a dry run in check mode."""
        objects: list[dict[str, Any]] = []
        changed_any = False
        diff: dict[str, dict[str, Any]] = {"before": {}, "after": {}}
        try:
            service = K8sService(connect(self.params), check_mode=self.check_mode)
            for manifest in manifests:
                metadata = manifest["metadata"]
                ref = object_ref(manifest["kind"], metadata["name"], metadata.get("namespace"))
                if self.params["state"] == "absent":
                    changed = service.delete(
                        manifest["apiVersion"], manifest["kind"], metadata["name"], metadata.get("namespace")
                    )
                else:
                    changed, before, after = service.apply(manifest)
                    if changed:
                        diff["before"][ref], diff["after"][ref] = redacted(before), redacted(after)
                changed_any = changed_any or changed
                objects.append({"object": ref, "changed": changed})
        except K8sError as error:
            raise ApplyError(str(error), objects=objects) from None
        self.warnings.extend(service.warnings)
        return dict(changed=changed_any, objects=objects, diff=diff)

    def render(self, manifests: list[dict[str, Any]]) -> dict[str, Any]:
        """Write each manifest to its file unless it already holds exactly that with the right mode.

        Returns ``changed``, ``files``, ``objects`` (each file's object and whether it changed) and ``diff``
        (before/after per file, Secret data redacted). In check mode nothing is written.
        """
        directory, prefix = self.params["render_dir"], self.params["render_prefix"]
        files: list[str] = []
        objects: list[dict[str, Any]] = []
        diff: dict[str, dict[str, Any]] = {"before": {}, "after": {}}
        for manifest in manifests:
            metadata = manifest["metadata"]
            path = os.path.join(
                directory,
                "%s%s-%s-%s.yml" % (prefix, manifest["kind"], metadata.get("namespace", "cluster"), metadata["name"]),
            )
            content = json.dumps(manifest, indent=2, sort_keys=True) + "\n"  # JSON is YAML
            mode = SECRET_FILE_MODE if holds_secrets(manifest["kind"]) else MANIFEST_FILE_MODE
            try:
                before = read_text(path)
            except (OSError, ValueError) as error:  # a directory, unreadable, not UTF-8: say so, write nothing there
                raise ApplyError("cannot read %s: %s" % (path, error), files=files, objects=objects) from None
            changed = before != content or os.stat(path).st_mode & 0o7777 != mode
            if changed:
                diff["before"][path] = _shown(before, manifest["kind"])
                diff["after"][path] = redacted(manifest)
                if not self.check_mode:
                    try:
                        write_atomically(path, content, mode, self.atomic_move)
                    except OSError as error:
                        raise ApplyError("cannot write %s: %s" % (path, error), files=files, objects=objects) from None
            files.append(path)
            objects.append({"object": object_ref(manifest["kind"], metadata["name"], metadata.get("namespace")),
                            "changed": changed, "file": path})  # fmt: skip
        return dict(changed=any(item["changed"] for item in objects), files=files, objects=objects, diff=diff)


def _shown(text: str | None, kind: str) -> Any:
    """What a diff shows of a file's old content: the manifest (Secret data redacted), or nothing."""
    if text is None:
        return None
    try:
        manifest = json.loads(text)
    except ValueError:
        manifest = None
    if isinstance(manifest, dict):
        return redacted(manifest)
    # Not what this module writes; the file of a Secret may still hold secret text, so show none of it.
    return REDACTED if holds_secrets(kind) else text
