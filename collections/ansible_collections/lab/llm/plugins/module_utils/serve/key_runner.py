# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The flow of lab.llm.serve_api_key: keep a working API key of the lab-llm endpoint in a Kubernetes Secret."""

from __future__ import annotations

from typing import Any

from ansible_collections.lab.llm.plugins.module_utils.k8s.secrets import opaque_secret, secret_text
from ansible_collections.lab.llm.plugins.module_utils.k8s.service import K8sService
from ansible_collections.lab.llm.plugins.module_utils.serve.client import ServeApi


class ApiKeyRunner:
    """Checks the key the Secret holds against the endpoint; only when it is missing or refused, replaces it.

    ``params`` are the module's (``key_name``, ``key_role``, ``admin_username``, ``admin_password``,
    ``secret_name``, ``secret_namespace``, ``secret_key``). ``run()`` raises ServeApiError or K8sError naming the
    call that failed; nothing is written in check mode.
    """

    def __init__(self, service: K8sService, api: ServeApi, params: dict[str, Any], check_mode: bool) -> None:
        self.service = service
        self.api = api
        self.params = params
        self.check_mode = check_mode

    def run(self) -> dict[str, Any]:
        """The module result: ``changed``, ``secret`` (namespace/name) and, when a key was created, ``key_id``."""
        params = self.params
        name, namespace, data_key = params["secret_name"], params["secret_namespace"], params["secret_key"]
        result: dict[str, Any] = {"changed": False, "secret": "%s/%s" % (namespace, name)}
        stored = secret_text(self.service.get("v1", "Secret", name, namespace), data_key)
        if stored and self.api.key_works(stored):
            return result
        result["changed"] = True
        if self.check_mode:
            return result
        token = self.api.token(params["admin_username"], params["admin_password"])
        # The endpoint shows a key only when it creates it: older keys of this name are useless, delete them.
        for old in self.api.keys(token):
            if old.get("name") == params["key_name"]:
                self.api.delete_key(token, old["id"])
        created = self.api.create_key(token, params["key_name"], params["key_role"])
        self.service.apply(opaque_secret(name, namespace, {data_key: created["key"]}))
        result["key_id"] = created.get("id")
        return result
