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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lab.llm.plugins.module_utils.k8s.apply_runner import ApplyError, ApplyRunner, secret_values
from ansible_collections.lab.llm.plugins.module_utils.k8s.client import AUTH_ARG_SPEC


def argument_spec() -> dict:
    spec = dict(
        manifests=dict(type="list", elements="dict", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        render_dir=dict(type="path"),
        render_prefix=dict(type="str", default=""),
    )
    spec.update(AUTH_ARG_SPEC)
    return spec


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    # Secret values never show in the result, the diff or the logged arguments.
    module.no_log_values.update(secret_values(module.params["manifests"]))
    runner = ApplyRunner(module.params, module.check_mode, module.atomic_move)
    try:
        result = runner.run()
    except ApplyError as error:
        module.fail_json(msg=str(error), **error.result)
    for warning in runner.warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
