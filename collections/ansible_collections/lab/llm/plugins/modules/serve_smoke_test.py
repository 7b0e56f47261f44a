#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: serve_smoke_test
short_description: Check a lab-llm endpoint end to end, a token and one chat completion
version_added: "0.1.0"
description:
  - The smoke test of the plain-Ray path for the endpoint of a RayService, through the Ingress to its Serve
    Service; C(/readyz) (the engine can serve), a token from C(/auth/token), then one chat completion with that token.
  - Not through the Kubernetes API server's service proxy, which drops the C(Authorization) header.
  - Changes nothing; fails naming the call and the HTTP answer.
author:
  - lab-llm developers (@lab-llm)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  url:
    description: Base URL of the endpoint, for example C(https://llm.lab.example).
    type: str
    required: true
  validate_certs:
    description: Verify the endpoint's TLS certificate.
    type: bool
    default: true
  ca_path:
    description: CA bundle for the endpoint's certificate.
    type: path
  username:
    description: A user of the auth store.
    type: str
    required: true
  password:
    description: Their password.
    type: str
    required: true
  model:
    description: Model name to ask; the first one C(/v1/models) lists when unset.
    type: str
  prompt:
    description: The chat message.
    type: str
    default: Say hello.
  max_tokens:
    description: Tokens to generate.
    type: int
    default: 8
"""

EXAMPLES = r"""
- name: Token and one chat completion through the Ingress of lab-llm-serve-svc
  lab.llm.serve_smoke_test:
    url: https://llm.lab.example
    username: admin
    password: "{{ vault_lab_llm_admin_password }}"
  delegate_to: localhost
"""

RETURN = r"""
model:
  description: The model that answered.
  returned: success
  type: str
reply:
  description: Its reply (first 200 characters).
  returned: success
  type: str
usage:
  description: Token usage the endpoint reported.
  returned: success
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lab.llm.plugins.module_utils.serve.client import ServeApi, ServeApiError
from ansible_collections.lab.llm.plugins.module_utils.serve.smoke_runner import SmokeTestRunner


def argument_spec() -> dict:
    return dict(
        url=dict(type="str", required=True),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
        username=dict(type="str", required=True),
        password=dict(type="str", required=True, no_log=True),
        model=dict(type="str"),
        prompt=dict(type="str", default="Say hello."),
        max_tokens=dict(type="int", default=8, no_log=False),
    )


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    try:
        api = ServeApi(params["url"], params["validate_certs"], params["ca_path"])
        result = SmokeTestRunner(api, params).run()
    except ServeApiError as error:
        module.fail_json(msg="smoke test: %s" % error)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
