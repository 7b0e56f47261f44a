# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The flow of lab.llm.serve_smoke_test: readiness, a token, one chat completion."""

from __future__ import annotations

from typing import Any

from ansible_collections.lab.llm.plugins.module_utils.serve.client import ServeApi, ServeApiError

REPLY_SHOWN_CHARS = 200


class SmokeTestRunner:
    """Asks the endpoint behind ``api`` one chat question as a user; changes nothing there.

    ``params`` are the module's (``url``, ``username``, ``password``, ``model``, ``prompt``, ``max_tokens``).
    ``run()`` raises ServeApiError naming the call that failed: ``/readyz`` not ready, a refused login, a
    ``/v1/models`` that lists no model when ``model`` is unset, or a completion without ``choices[0].message``.
    """

    def __init__(self, api: ServeApi, params: dict[str, Any]) -> None:
        self.api = api
        self.params = params

    def run(self) -> dict[str, Any]:
        """The module result: ``changed`` (always False), ``model`` (the one asked), ``reply`` (its first
        REPLY_SHOWN_CHARS characters) and ``usage`` (the endpoint's token counts)."""
        params = self.params
        self.api.healthy()
        token = self.api.token(params["username"], params["password"])
        model = params["model"]
        if not model:
            models = self.api.models(token)
            if not models:
                raise ServeApiError("GET %s/v1/models lists no model" % params["url"])
            model = models[0]
        reply, usage = self.api.chat(token, model, params["prompt"], params["max_tokens"])
        return dict(changed=False, model=model, reply=(reply or "")[:REPLY_SHOWN_CHARS], usage=usage)
