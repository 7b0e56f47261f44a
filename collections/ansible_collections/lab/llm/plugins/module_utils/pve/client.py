# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection to the Proxmox VE API (proxmoxer over HTTPS): arguments, auth, TLS, timeouts and retries.

Auth is an API token (``Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET``) or a password, which
proxmoxer turns into a ticket cookie plus a CSRFPreventionToken header for writes. Never SSH.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

from ansible.module_utils.basic import env_fallback

from ansible_collections.lab.llm.plugins.module_utils.pve.exceptions import PveApiError, PveError
from ansible_collections.lab.llm.plugins.module_utils.requirements import missing_library

PROXMOXER_IMPORT_ERROR = None
# The library that could not be imported (a key of requirements.TESTED_VERSIONS), for missing_library().
MISSING_LIBRARY = "proxmoxer"
try:
    import requests
    from proxmoxer import ProxmoxAPI
    from proxmoxer.core import AuthenticationError, ResourceException
except ImportError as error:  # reported by the module through missing_library (missing_required_lib)
    PROXMOXER_IMPORT_ERROR = traceback.format_exc()
    # proxmoxer needs requests too: a missing requests is named as such, whichever import met it.
    MISSING_LIBRARY = "requests" if (error.name or "").split(".", maxsplit=1)[0] == "requests" else "proxmoxer"

# Writes are not idempotent on the server side (a clone retried after a 5xx could clone twice),
# so only reads are retried on 5xx; every method is retried when the connection could not be opened.
RETRYABLE_METHODS = ("GET",)


def pve_argument_spec() -> dict:
    """Connection options shared by every lab.llm Proxmox module (documented in each module)."""
    return dict(
        api_host=dict(type="str", required=True, fallback=(env_fallback, ["PROXMOX_HOST"])),
        api_port=dict(type="int", default=8006, fallback=(env_fallback, ["PROXMOX_PORT"])),
        api_user=dict(type="str", required=True, fallback=(env_fallback, ["PROXMOX_USER"])),
        api_token_id=dict(type="str", fallback=(env_fallback, ["PROXMOX_TOKEN_ID"])),
        api_token_secret=dict(type="str", no_log=True, fallback=(env_fallback, ["PROXMOX_TOKEN_SECRET"])),
        api_password=dict(type="str", no_log=True, fallback=(env_fallback, ["PROXMOX_PASSWORD"])),
        validate_certs=dict(type="bool", default=True, fallback=(env_fallback, ["PROXMOX_VALIDATE_CERTS"])),
        ca_path=dict(type="path", fallback=(env_fallback, ["PROXMOX_CA_PATH"])),
        api_timeout=dict(type="int", default=30),
        api_retries=dict(type="int", default=3),
    )


PVE_REQUIRED_ONE_OF = [("api_token_secret", "api_password")]
PVE_REQUIRED_TOGETHER = [("api_token_id", "api_token_secret")]


class PveClient:
    """Thin wrapper over proxmoxer: one place for auth, TLS, timeouts, retries and error messages."""

    def __init__(self, api: Any, retries: int = 3, retry_delay: float = 1.0) -> None:
        self._api = api
        self._retries = max(0, retries)
        self._retry_delay = retry_delay

    @classmethod
    def from_params(cls, params: dict) -> PveClient:
        """Connect with the module's connection options (see pve_argument_spec)."""
        if PROXMOXER_IMPORT_ERROR is not None:
            raise PveError(missing_library(MISSING_LIBRARY, "to talk to the Proxmox VE API"))
        verify = params["validate_certs"]
        if verify and params.get("ca_path"):
            verify = params["ca_path"]
        kwargs = dict(
            host=params["api_host"],
            port=params["api_port"],
            user=params["api_user"],
            verify_ssl=verify,
            timeout=params["api_timeout"],
        )
        if params.get("api_token_secret"):
            kwargs.update(token_name=params["api_token_id"], token_value=params["api_token_secret"])
        else:
            kwargs.update(password=params["api_password"])
        try:
            api = ProxmoxAPI(**kwargs)
        except AuthenticationError as exc:
            raise PveError(
                "authentication as %s at %s failed: %s" % (params["api_user"], params["api_host"], exc)
            ) from None
        except requests.exceptions.RequestException as exc:
            raise PveError(
                "cannot reach the Proxmox API at %s:%s: %s" % (params["api_host"], params["api_port"], exc)
            ) from None
        return cls(api, retries=params["api_retries"])

    def get(self, path: str, **params: Any) -> Any:
        return self._call("GET", path, params)

    def post(self, path: str, **params: Any) -> Any:
        return self._call("POST", path, params)

    def put(self, path: str, **params: Any) -> Any:
        return self._call("PUT", path, params)

    def delete(self, path: str, **params: Any) -> Any:
        return self._call("DELETE", path, params)

    def _call(self, method: str, path: str, params: dict[str, Any]) -> Any:
        resource = self._api(path.strip("/"))
        attempt = 0
        while True:
            try:
                return getattr(resource, method.lower())(**params)
            except ResourceException as exc:
                if method in RETRYABLE_METHODS and exc.status_code >= 500 and attempt < self._retries:
                    attempt += 1
                    time.sleep(self._retry_delay * attempt)
                    continue
                raise PveApiError(
                    method, path, exc.status_code, _reason(exc), getattr(exc, "errors", None) or {}
                ) from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                retryable = method in RETRYABLE_METHODS or isinstance(exc, requests.exceptions.ConnectTimeout)
                if retryable and attempt < self._retries:
                    attempt += 1
                    time.sleep(self._retry_delay * attempt)
                    continue
                raise PveError("%s %s: no answer from the Proxmox API: %s" % (method, path, exc)) from None


def _reason(exc: Any) -> str:
    """Proxmox puts its message in the HTTP reason phrase, which proxmoxer keeps as ``content``."""
    return str(exc.content or exc.status_message or "")
