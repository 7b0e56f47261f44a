# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Calls to the lab-llm HTTP API at its URL (the Ingress in front of the RayService's Serve Service).

Not through the API server's service proxy: the API server deletes the Authorization header of every request it
has authenticated (k8s.io/apiserver, filters/authentication.go), so the endpoint's bearer token would never arrive.
Endpoints as the lab-llm app defines them (serve/lab_llm/app/routes.py): GET /readyz, POST /auth/token (OAuth2
password form), GET /admin/keys (a JSON list of keys), POST /admin/keys, DELETE /admin/keys/{id}, GET /v1/models,
POST /v1/chat/completions.
"""

from __future__ import annotations

import json
from typing import Any

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import urlencode
from ansible.module_utils.urls import Request

# The roles the gate knows out of the box: lab-llm's AuthConfig.roles default (serve/lab_llm/config.py,
# _default_roles). The gate refuses a key of any other role (HTTP 400, AuthStore._check_role); a unit test fails when
# this list drifts from lab-llm's.
KEY_ROLES = ("admin", "user", "viewer")


class ServeApiError(Exception):
    """A call to the endpoint failed; the message names the call and the answer."""


class ServeApi:
    """One lab-llm endpoint; every method raises ServeApiError naming the call when the answer is not as expected."""

    def __init__(self, url: str, validate_certs: bool = True, ca_path: str | None = None, timeout: int = 120) -> None:
        self.url = url.rstrip("/")
        self.request = Request(validate_certs=validate_certs, ca_path=ca_path, timeout=timeout)

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        form: dict[str, str] | None = None,
        expect: tuple[int, ...] = (200,),
    ) -> tuple[int, Any]:
        """(HTTP status, the answer parsed as JSON, or its text when it is not JSON, or None when empty)."""
        headers = {"Accept": "application/json"}
        data = None
        if token:
            headers["Authorization"] = "Bearer %s" % token
        if form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            data = urlencode(form)
        elif body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body)
        try:
            response = self.request.open(method, self.url + path, data=data, headers=headers)
            status, text = response.getcode(), response.read().decode("utf-8", "replace")
        except HTTPError as error:
            status, text = error.code, error.read().decode("utf-8", "replace")
        except (URLError, OSError) as error:
            raise ServeApiError("%s %s%s: cannot connect: %s" % (method, self.url, path, error)) from None
        if status not in expect:
            raise ServeApiError("%s %s%s answered HTTP %s: %s" % (method, self.url, path, status, text[:300]))
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            return status, text

    def healthy(self) -> None:
        """The engine can serve: readiness (/readyz), not just liveness of the gate (/healthz)."""
        self.call("GET", "/readyz")

    def token(self, username: str, password: str) -> str:
        """A bearer token for the user (OAuth2 password grant)."""
        _status, answer = self.call(
            "POST", "/auth/token", form={"grant_type": "password", "username": username, "password": password}
        )
        if not isinstance(answer, dict) or not answer.get("access_token"):
            raise ServeApiError("POST %s/auth/token returned no access_token" % self.url)
        return answer["access_token"]

    def key_works(self, key: str) -> bool:
        """Whether the endpoint accepts the API key (GET /v1/models answers 200, not 401/403)."""
        status, _answer = self.call("GET", "/v1/models", token=key, expect=(200, 401, 403))
        return status == 200

    def keys(self, token: str) -> list[dict[str, Any]]:
        """The API keys the endpoint knows, ``[{"id", "name", "role", ...}]`` (never the secret itself)."""
        _status, answer = self.call("GET", "/admin/keys", token=token)
        if not isinstance(answer, list):
            raise ServeApiError("GET %s/admin/keys returned %s, not a list of keys" % (self.url, str(answer)[:300]))
        return answer

    def delete_key(self, token: str, key_id: str) -> None:
        self.call("DELETE", "/admin/keys/%s" % key_id, token=token, expect=(200, 204, 404))

    def create_key(self, token: str, name: str, role: str) -> dict[str, Any]:
        """The new key, ``{"id", "name", "role", "key"}``; the endpoint shows ``key`` only this once."""
        _status, answer = self.call(
            "POST", "/admin/keys", token=token, body={"name": name, "role": role}, expect=(200, 201)
        )
        if not isinstance(answer, dict) or not answer.get("key"):
            raise ServeApiError("POST %s/admin/keys returned no key" % self.url)
        return answer

    def models(self, token: str) -> list[str]:
        """The ids of the models the token may use."""
        _status, answer = self.call("GET", "/v1/models", token=token)
        return [model["id"] for model in (answer or {}).get("data", [])]

    def chat(self, token: str, model: str, prompt: str, max_tokens: int) -> tuple[str, dict[str, Any]]:
        """(the reply's text, its ``usage``) for one user message."""
        _status, answer = self.call(
            "POST",
            "/v1/chat/completions",
            token=token,
            body={"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens},
        )
        try:
            return answer["choices"][0]["message"]["content"], answer.get("usage") or {}
        except (KeyError, IndexError, TypeError):
            raise ServeApiError(
                "POST %s/v1/chat/completions returned no choices[0].message: %s" % (self.url, str(answer)[:300])
            ) from None
