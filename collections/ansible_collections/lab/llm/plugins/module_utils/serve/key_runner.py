# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The flow of lab.llm.serve_api_key: keep a working API key of the lab-llm endpoint in a Kubernetes Secret."""

from __future__ import annotations

from typing import Any

from ansible_collections.lab.llm.plugins.module_utils.k8s.secrets import opaque_secret, secret_text
from ansible_collections.lab.llm.plugins.module_utils.k8s.service import K8sService
from ansible_collections.lab.llm.plugins.module_utils.serve.client import KEY_ROLES, ServeApi, ServeApiError


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
        """The module result: ``changed``, ``secret`` (namespace/name), ``diff`` (key metadata before and after,
        never a key) and, when a key was created, ``key_id``."""
        params = self.params
        name, namespace, data_key = params["secret_name"], params["secret_namespace"], params["secret_key"]
        if params["key_role"] not in KEY_ROLES:
            # The argument spec's choices refuse it already; this guards callers of the runner alone, because the
            # old keys are deleted before the new one is created (the endpoint refuses a second key of one name).
            raise ServeApiError("key_role %r is not one of %s" % (params["key_role"], ", ".join(KEY_ROLES)))
        secret_ref = "%s/%s" % (namespace, name)
        result: dict[str, Any] = {"changed": False, "secret": secret_ref}
        stored = secret_text(self.service.get("v1", "Secret", name, namespace), data_key)
        if stored and self.api.key_works(stored):
            result["diff"] = {"before": {}, "after": {}}
            return result
        wanted = {"secret": secret_ref, "key_name": params["key_name"], "key_role": params["key_role"]}
        before: dict[str, Any] = {"secret": secret_ref, "stored_key": "refused by the endpoint" if stored else "none"}
        result.update(changed=True, diff={"before": before, "after": wanted})
        if self.check_mode:
            return result
        token = self.api.token(params["admin_username"], params["admin_password"])
        # The endpoint shows a key only when it creates it: older keys of this name are useless, delete them.
        old_keys = [old for old in self.api.keys(token) if old.get("name") == params["key_name"]]
        before["endpoint_keys"] = [{field: old.get(field) for field in ("id", "name", "role")} for old in old_keys]
        for old in old_keys:
            self.api.delete_key(token, old["id"])
        created = self.api.create_key(token, params["key_name"], params["key_role"])
        self.service.apply(opaque_secret(name, namespace, {data_key: created["key"]}))
        result["key_id"] = created.get("id")
        wanted["key_id"] = created.get("id")
        return result
