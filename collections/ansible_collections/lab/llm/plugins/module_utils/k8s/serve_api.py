# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Calls to the lab-llm HTTP API through the Kubernetes service proxy (no Ingress or port-forward needed).

Endpoints as the lab-llm app defines them: GET /healthz, POST /auth/token (OAuth2 password form),
POST/GET/DELETE /admin/keys, GET /v1/models, POST /v1/chat/completions.
"""

from __future__ import annotations

import json

from ansible_collections.lab.llm.plugins.module_utils.k8s.exceptions import K8sError


class ServeApi:
    def __init__(self, service, namespace, service_name, port):
        self.service = service
        self.namespace = namespace
        self.service_name = service_name
        self.port = port

    def call(self, method, path, token=None, body=None, form=None, expect=(200,)):
        headers = {"Authorization": "Bearer %s" % token} if token else {}
        status, text = self.service.proxy(method, self.namespace, self.service_name, self.port, path,
                                          body=body, headers=headers, form=form)
        if status not in expect:
            raise K8sError("%s %s answered HTTP %s: %s" % (method, path, status, (text or "")[:300]),
                           kind="Service", name=self.service_name, namespace=self.namespace)
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text

    def healthy(self):
        self.call("GET", "/healthz")

    def token(self, username, password):
        _, answer = self.call("POST", "/auth/token", form={"grant_type": "password", "username": username,
                                                          "password": password})
        if not isinstance(answer, dict) or not answer.get("access_token"):
            raise K8sError("POST /auth/token returned no access_token", kind="Service", name=self.service_name,
                           namespace=self.namespace)
        return answer["access_token"]

    def key_works(self, key):
        status, _ = self.call("GET", "/v1/models", token=key, expect=(200, 401, 403))
        return status == 200

    def keys(self, token):
        _, answer = self.call("GET", "/admin/keys", token=token)
        return answer.get("keys", answer) if isinstance(answer, dict) else (answer or [])

    def delete_key(self, token, key_id):
        self.call("DELETE", "/admin/keys/%s" % key_id, token=token, expect=(200, 204, 404))

    def create_key(self, token, name, role):
        _, answer = self.call("POST", "/admin/keys", token=token, body={"name": name, "role": role},
                              expect=(200, 201))
        if not isinstance(answer, dict) or not answer.get("key"):
            raise K8sError("POST /admin/keys returned no key", kind="Service", name=self.service_name,
                           namespace=self.namespace)
        return answer

    def models(self, token):
        _, answer = self.call("GET", "/v1/models", token=token)
        return [model["id"] for model in (answer or {}).get("data", [])]

    def chat(self, token, model, prompt, max_tokens):
        _, answer = self.call("POST", "/v1/chat/completions", token=token, body={
            "model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens})
        try:
            return answer["choices"][0]["message"]["content"], answer.get("usage") or {}
        except (KeyError, IndexError, TypeError):
            raise K8sError("POST /v1/chat/completions returned no choices[0].message: %s" % str(answer)[:300],
                           kind="Service", name=self.service_name, namespace=self.namespace) from None
