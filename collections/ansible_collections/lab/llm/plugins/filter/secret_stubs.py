# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: secret_stubs
short_description: Opaque Secret manifests without values, one per name
version_added: "0.1.0"
author: lab-llm developers (@lab-llm)
description:
  - Builds a C(v1) Opaque Secret manifest (labelled C(app.kubernetes.io/managed-by=lab-llm), no C(data)) for
    each name, so rendered manifests show which Secrets exist without carrying their values.
positional: namespace
options:
  _input:
    description: Names of the Secrets.
    type: list
    elements: str
    required: true
  namespace:
    description: Namespace of the Secrets.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Manifests of the Secrets a RayService mounts, without their values
  ansible.builtin.debug:
    msg: "{{ ['lab-llm-auth-store', 'lab-llm-signing-keys'] | lab.llm.secret_stubs('lab-llm') }}"
"""

RETURN = r"""
_value:
  description: One Secret manifest per name, in the order given.
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.lab.llm.plugins.module_utils.k8s.secrets import opaque_secret


def secret_stubs(names: list[str], namespace: str) -> list[dict]:
    if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) and name for name in names):
        raise AnsibleFilterError("secret_stubs: expected a list of Secret names, got %r" % (names,))
    return [opaque_secret(name, namespace, {}) for name in names]


class FilterModule:
    def filters(self) -> dict:
        return {"secret_stubs": secret_stubs}
