#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: k8s_apply
short_description: Apply (or delete) a list of Kubernetes manifests with the lab-llm field manager, or write them out
version_added: "0.1.0"
description:
  - Server-side applies each manifest in order with the field manager C(lab-llm); in check mode as a server dry run.
    Reports a change only when an object's user-set fields differ (status and server bookkeeping ignored).
  - The values of Secrets (C(data), C(stringData)) are hidden from the result, the diff and the logged arguments.
  - With O(render_dir), writes each manifest to C(RENDER_DIR/PREFIXKind-namespace-name.yml) instead and contacts no
    cluster; the collection's tests validate these files against the Kubernetes and CRD schemas. Each file is
    replaced atomically, only when its content or mode differs (mode C(0600) for Secrets and SSHCredentials, whose
    values the file holds in the clear, C(0644) otherwise); in check mode nothing is written and the result and
    diff say what would change.
author:
  - lab-llm developers (@lab-llm)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - lab.llm.k8s_auth
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
options:
  manifests:
    description: Objects to apply, each with C(apiVersion), C(kind), C(metadata.name) (and C(metadata.namespace)).
    type: list
    elements: dict
    required: true
  state:
    description: C(present) applies, C(absent) deletes.
    type: str
    choices: [present, absent]
    default: present
  render_dir:
    description: Directory to write the manifests to instead of applying them.
    type: path
  render_prefix:
    description: File name prefix in O(render_dir), for example the stage.
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Namespace and PVC of OpenWebUI
  lab.llm.k8s_apply:
    manifests:
      - {apiVersion: v1, kind: Namespace, metadata: {name: openwebui}}
  delegate_to: localhost
"""

RETURN = r"""
objects:
  description: C(Kind namespace/name) of each manifest and whether it changed (would change, in check mode); with
    O(render_dir) also the C(file).
  returned: always
  type: list
  elements: dict
files:
  description: The file of each manifest with O(render_dir), written or already up to date.
  returned: with O(render_dir)
  type: list
  elements: str
"""

import json
import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lab.llm.plugins.module_utils.files import write_atomically
from ansible_collections.lab.llm.plugins.module_utils.k8s.client import AUTH_ARG_SPEC, connect
from ansible_collections.lab.llm.plugins.module_utils.k8s.exceptions import K8sError, object_ref
from ansible_collections.lab.llm.plugins.module_utils.k8s.secrets import REDACTED, holds_secrets, redacted
from ansible_collections.lab.llm.plugins.module_utils.k8s.service import K8sService


def _check(manifests: list[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    for index, manifest in enumerate(manifests):
        metadata = manifest.get("metadata") or {}
        missing = [key for key in ("apiVersion", "kind") if not manifest.get(key)]
        if not metadata.get("name"):
            missing.append("metadata.name")
        if missing:
            problems.append("manifests[%d] (%s) lacks %s" % (index, manifest.get("kind", "?"), ", ".join(missing)))
    return problems


SECRET_FILE_MODE = 0o600  # a rendered Secret (or SSHCredentials) holds its values in the clear; base64 hides nothing
MANIFEST_FILE_MODE = 0o644


def _render(module: AnsibleModule, manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """Write each manifest to its file unless it already holds exactly that with the right mode.

    Returns the module result: ``changed``, ``files``, ``objects`` (each file's object and whether it changed)
    and ``diff`` (before/after per file, Secret data redacted). In check mode nothing is written.
    """
    directory, prefix = module.params["render_dir"], module.params["render_prefix"]
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
        before = _read(path)
        changed = before != content or os.stat(path).st_mode & 0o7777 != mode
        if changed:
            diff["before"][path] = _shown(before, manifest["kind"])
            diff["after"][path] = redacted(manifest)
            if not module.check_mode:
                try:
                    write_atomically(path, content, mode, module.atomic_move)
                except OSError as error:
                    module.fail_json(msg="cannot write %s: %s" % (path, error), files=files, objects=objects)
        files.append(path)
        objects.append({"object": object_ref(manifest["kind"], metadata["name"], metadata.get("namespace")),
                        "changed": changed, "file": path})  # fmt: skip
    return dict(changed=any(item["changed"] for item in objects), files=files, objects=objects, diff=diff)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


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


def main() -> None:
    argument_spec = dict(
        manifests=dict(type="list", elements="dict", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        render_dir=dict(type="path"),
        render_prefix=dict(type="str", default=""),
    )
    argument_spec.update(AUTH_ARG_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    manifests = module.params["manifests"]
    # Secret values never show in the result, the diff or the logged arguments.
    for manifest in manifests:
        if manifest.get("kind") == "Secret":
            for section in ("data", "stringData"):
                module.no_log_values.update(str(value) for value in (manifest.get(section) or {}).values() if value)
    problems = _check(manifests)
    if problems:
        module.fail_json(msg="; ".join(problems))
    if module.params["render_dir"]:
        module.exit_json(**_render(module, manifests))
    objects, changed_any = [], False
    diff: dict = {"before": {}, "after": {}}
    try:
        service = K8sService(connect(module.params), check_mode=module.check_mode)
        for manifest in manifests:
            metadata = manifest["metadata"]
            ref = object_ref(manifest["kind"], metadata["name"], metadata.get("namespace"))
            if module.params["state"] == "absent":
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
        module.fail_json(msg=str(error), objects=objects)
    for warning in service.warnings:
        module.warn(warning)
    module.exit_json(changed=changed_any, objects=objects, diff=diff)


if __name__ == "__main__":
    main()
