#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: serve_api_key
short_description: Keep a working lab-llm API key in a Kubernetes Secret
version_added: "0.1.0"
description:
  - Ensures that the Secret O(secret_name) holds, under O(secret_key), an API key of the lab-llm endpoint that
    the endpoint accepts. When the Secret is missing or its key no longer works, logs in as an admin
    (C(/auth/token)), deletes older keys of the same O(key_name), creates a new one (C(POST /admin/keys); the
    endpoint shows a key only once) and writes it to the Secret.
  - Talks to the endpoint at O(url) (its Ingress), to Kubernetes only for the Secret. The key is never returned.
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
    details: Before and after show the key's metadata (name, role, id, the Secret), never a key.
  platform:
    platforms: posix
options:
  url:
    description: Base URL of the lab-llm endpoint, for example C(https://llm.lab.example).
    type: str
    required: true
  endpoint_validate_certs:
    description: Verify the endpoint's TLS certificate.
    type: bool
    default: true
  endpoint_ca_path:
    description: CA bundle for the endpoint's certificate.
    type: path
  admin_username:
    description: A user with the C(admin) role.
    type: str
    required: true
  admin_password:
    description: Their password.
    type: str
    required: true
  key_name:
    description: Name of the API key in the endpoint (keys are listed by name).
    type: str
    required: true
  key_role:
    description:
      - Role of the key, one of the roles lab-llm's gate knows by default (C(auth.roles) in lab-llm's config).
      - Checked before the module deletes an older key of the same name.
    type: str
    default: user
    choices: [admin, user, viewer]
  secret_name:
    description: Secret that keeps the key.
    type: str
    required: true
  secret_namespace:
    description: Namespace of the Secret (it must exist).
    type: str
    required: true
  secret_key:
    description: Key of the Secret's data that holds the API key.
    type: str
    default: OPENAI_API_KEY
"""

EXAMPLES = r"""
- name: API key for OpenWebUI
  lab.llm.serve_api_key:
    url: https://llm.lab.example
    admin_username: admin
    admin_password: "{{ vault_lab_llm_admin_password }}"
    key_name: openwebui
    secret_name: openwebui-openai
    secret_namespace: openwebui
  delegate_to: localhost
"""

RETURN = r"""
key_id:
  description: Id of the key created (keys already working are not looked up).
  returned: when a key was created
  type: str
secret:
  description: C(namespace/name) of the Secret.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lab.llm.plugins.module_utils.k8s.client import AUTH_ARG_SPEC, connect
from ansible_collections.lab.llm.plugins.module_utils.k8s.exceptions import K8sError
from ansible_collections.lab.llm.plugins.module_utils.k8s.service import K8sService
from ansible_collections.lab.llm.plugins.module_utils.serve.client import KEY_ROLES, ServeApi, ServeApiError
from ansible_collections.lab.llm.plugins.module_utils.serve.key_runner import ApiKeyRunner


def argument_spec() -> dict:
    spec = dict(
        url=dict(type="str", required=True),
        endpoint_validate_certs=dict(type="bool", default=True),
        endpoint_ca_path=dict(type="path"),
        admin_username=dict(type="str", required=True),
        admin_password=dict(type="str", required=True, no_log=True),
        key_name=dict(type="str", required=True, no_log=False),
        key_role=dict(type="str", default="user", choices=list(KEY_ROLES), no_log=False),
        secret_name=dict(type="str", required=True),
        secret_namespace=dict(type="str", required=True, no_log=False),
        secret_key=dict(type="str", default="OPENAI_API_KEY", no_log=False),
    )
    spec.update(AUTH_ARG_SPEC)
    return spec


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    try:
        service = K8sService(connect(params), check_mode=module.check_mode)
        api = ServeApi(params["url"], params["endpoint_validate_certs"], params["endpoint_ca_path"])
        result = ApiKeyRunner(service, api, params, module.check_mode).run()
    except (K8sError, ServeApiError) as error:
        module.fail_json(
            msg="API key %s for %s/%s: %s"
            % (params["key_name"], params["secret_namespace"], params["secret_name"], error)
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
