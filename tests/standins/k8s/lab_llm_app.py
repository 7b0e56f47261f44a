"""A test double of the lab-llm HTTP API on loopback: the endpoints and shapes the app defines (/healthz,
/readyz, /auth/token, /admin/keys, /v1/models, /v1/chat/completions), one admin user `admin` / `s3cret`."""

from __future__ import annotations

import json
import secrets
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class FakeLabLlm:
    """Just enough of the lab-llm API: one admin user, bearer tokens, API keys shown once."""

    def __init__(self) -> None:
        self.tokens: set[str] = set()
        self.keys: dict[str, dict[str, str]] = {}  # id -> {name, role, key}
        self.roles = {"admin", "user", "viewer"}  # lab-llm's default auth.roles
        self.url = ""
        self.ready = True  # whether the engine can serve (/readyz)

    def __call__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        def answer(code: int, data: Any) -> tuple[int, dict, bytes]:
            return code, {"Content-Type": "application/json"}, json.dumps(data).encode()

        def error(code: int, message: str, kind: str, openai_code: str | None = None) -> tuple[int, dict, bytes]:
            # The app's error body: OpenAI's format, `code` an OpenAI string code or null (serve/lab_llm/app/errors.py).
            return answer(code, {"error": {"message": message, "type": kind, "param": None, "code": openai_code}})

        bearer = headers.get("authorization", "").removeprefix("Bearer ")
        if path == "/healthz":
            return answer(200, {"status": "ok"})
        if path == "/readyz":
            if not self.ready:
                return error(503, "the engine is not ready to serve", "service_unavailable_error")
            return answer(200, {"status": "ready"})
        if path == "/auth/token" and method == "POST":
            form = dict(urllib.parse.parse_qsl(body.decode()))
            if (form.get("username"), form.get("password")) != ("admin", "s3cret"):
                return error(401, "incorrect username or password", "authentication_error", "invalid_api_key")
            token = secrets.token_hex(8)
            self.tokens.add(token)
            return answer(200, {"access_token": token, "token_type": "bearer", "expires_in": 3600})
        key_valid = any(entry["key"] == bearer for entry in self.keys.values())
        if bearer not in self.tokens and not key_valid:
            return error(401, "missing bearer token or API key", "authentication_error", "invalid_api_key")
        if path == "/admin/keys" and method == "POST":
            if bearer not in self.tokens:
                return error(403, "role 'user' may not use this endpoint (needs scope 'admin')", "permission_error")
            request = json.loads(body)
            # The app's rules (serve/lab_llm/app/routes.py create_key, auth/store.py add_api_key): a role the gate
            # is not configured with is 400, a second key of one name 409.
            if request["role"] not in self.roles:
                known = ", ".join(sorted(self.roles))
                return error(400, "role {!r} is not configured; known roles: {}".format(request["role"], known),
                             "invalid_request_error")  # fmt: skip
            if any(entry["name"] == request["name"] for entry in self.keys.values()):
                message = "API key {!r} exists already; revoke it first or choose another name".format(request["name"])
                return error(409, message, "invalid_request_error")
            key_id, key = secrets.token_hex(4), "llm-" + secrets.token_hex(16)
            self.keys[key_id] = {"name": request["name"], "role": request["role"], "key": key}
            return answer(201, {"id": key_id, "name": request["name"], "role": request["role"], "key": key})
        if path == "/admin/keys" and method == "GET":
            return answer(200, [{"id": i, "name": k["name"], "role": k["role"]} for i, k in self.keys.items()])
        if path.startswith("/admin/keys/") and method == "DELETE":
            self.keys.pop(path.rsplit("/", 1)[1], None)
            return answer(204, {})
        if path == "/v1/models":
            return answer(200, {"object": "list", "data": [{"id": "qwen2.5-32b", "object": "model"}]})
        if path == "/v1/chat/completions":
            request = json.loads(body)
            return answer(
                200,
                {
                    "choices": [
                        {"message": {"role": "assistant", "content": "Hello from {}".format(request["model"])}}
                    ],
                    "usage": {"completion_tokens": 3},
                },
            )
        return error(404, "no such route", "not_found_error")


def serve(fake: FakeLabLlm) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {key.lower(): value for key, value in self.headers.items()}
            code, extra, data = fake(self.command, self.path, headers, body)
            self.send_response(code)
            for key, value in extra.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _any

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(name="app")
def running_app() -> Iterator[FakeLabLlm]:
    """The test double serving on loopback; its base URL in `.url`."""
    fake = FakeLabLlm()
    server = serve(fake)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()
