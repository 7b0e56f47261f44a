#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: serve_smoke_test
short_description: Check a lab-llm endpoint in Kubernetes end to end through its Service
version_added: "0.1.0"
description:
  - The smoke test of the plain-Ray path, run through the Kubernetes API server's service proxy so that the
    controller needs no Ingress or port-forward; C(/healthz), a token from C(/auth/token), then one chat
    completion with that token.
  - Changes nothing; fails naming the step and the HTTP answer.
author:
  - lab-llm developers
extends_documentation_fragment:
  - lab.llm.k8s_auth
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  namespace:
    description: Namespace of the Service.
    type: str
    required: true
  service:
    description: Service in front of the Serve application (the RayService's C(NAME-serve-svc)).
    type: str
    required: true
  port:
    description: Port of the Service.
    type: int
    default: 8000
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
- name: Token and one chat completion through lab-llm-serve-svc
  lab.llm.serve_smoke_test:
    namespace: lab-llm
    service: lab-llm-serve-svc
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
from ansible_collections.lab.llm.plugins.module_utils.k8s.client import AUTH_ARG_SPEC, connect
from ansible_collections.lab.llm.plugins.module_utils.k8s.exceptions import K8sError
from ansible_collections.lab.llm.plugins.module_utils.k8s.serve_api import ServeApi
from ansible_collections.lab.llm.plugins.module_utils.k8s.service import K8sService


def main():
    argument_spec = dict(
        namespace=dict(type="str", required=True),
        service=dict(type="str", required=True),
        port=dict(type="int", default=8000),
        username=dict(type="str", required=True),
        password=dict(type="str", required=True, no_log=True),
        model=dict(type="str"),
        prompt=dict(type="str", default="Say hello."),
        max_tokens=dict(type="int", default=8),
    )
    argument_spec.update(AUTH_ARG_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    try:
        api = ServeApi(K8sService(connect(p)), p["namespace"], p["service"], p["port"])
        api.healthy()
        token = api.token(p["username"], p["password"])
        model = p["model"]
        if not model:
            models = api.models(token)
            if not models:
                raise K8sError("GET /v1/models lists no model", kind="Service", name=p["service"],
                               namespace=p["namespace"])
            model = models[0]
        reply, usage = api.chat(token, model, p["prompt"], p["max_tokens"])
    except K8sError as error:
        module.fail_json(msg="smoke test: %s" % error)
    module.exit_json(changed=False, model=model, reply=(reply or "")[:200], usage=usage)


if __name__ == "__main__":
    main()
