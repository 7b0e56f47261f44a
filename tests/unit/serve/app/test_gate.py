"""The gate in process (issue 11): every route refuses callers without a credential unless it is on the public list,
and the holes found by attacking it stay closed: the model that really serves is the one checked, tokens follow the
store, login throttling stays bounded, logins do not block the event loop, oversized credentials and unreadable
bodies are refused early and cleanly."""

from __future__ import annotations

import asyncio
import fcntl
import functools
import threading
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Route

from lab_llm.auth import LoginLimiter
from tests.unit.serve.app.gated_app import PASSWORD, SERVED_MODEL, GatedApp, build_gated_app

# The only routes that answer without a credential. /metrics is public only when configured so.
PUBLIC_ROUTES = {"/healthz", "/readyz", "/auth/token", "/token", "/openapi.json"}
# Routes the walk must find, so it cannot pass by walking nothing.
EXPECTED_ROUTES = {
    "/v1/models",
    "/v1/models/{model:path}",
    "/v1/chat/completions",
    "/v1/completions",
    "/admin/keys",
    "/admin/keys/{key_id}",
    "/metrics",
    *PUBLIC_ROUTES,
}


def walk(gated: GatedApp) -> list[tuple[str, str, int]]:
    """(method, path, status) of every route of the app, called without a credential."""
    answers = []
    for route in gated.routes_app.routes:
        if not isinstance(route, APIRoute | Route):
            continue
        url = route.path.replace("{model:path}", "x").replace("{key_id}", "x")
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            answer = gated.client.request(method, url, json={} if method in {"POST", "PUT", "PATCH"} else None)
            answers.append((method, route.path, answer.status_code))
    return answers


def test_every_route_outside_the_public_list_needs_a_credential(gated: GatedApp) -> None:
    answers = walk(gated)
    assert {path for _method, path, _status in answers} >= EXPECTED_ROUTES
    open_routes = [(m, p, s) for m, p, s in answers if s != 401 and p not in PUBLIC_ROUTES | {"/metrics"}]
    assert open_routes == []
    assert ("GET", "/metrics", 200) in answers  # metrics_public is the default


def test_metrics_need_a_credential_when_not_public(tmp_path: Path) -> None:
    gated = build_gated_app(tmp_path, metrics_public=False)
    answers = walk(gated)
    assert [(m, p, s) for m, p, s in answers if s != 401 and p not in PUBLIC_ROUTES] == []
    assert gated.client.get("/metrics", headers=gated.headers("alice")).status_code == 200
    assert gated.client.get("/metrics", headers=gated.headers("bob")).status_code == 403


@functools.cache
def vllm_routes() -> list[tuple[str, str]]:
    """(method, path) of every route of vLLM's real OpenAI app, as vLLM 0.32's `build_app` mounts them."""
    from vllm.entrypoints.launchers.app import build_app
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    args = make_arg_parser(FlexibleArgumentParser()).parse_args(["--model", "/m"])
    app = build_app(args, supported_tasks=("generate",))
    return sorted(
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or {"GET"})
        if method != "HEAD"
    )


def test_only_the_published_routes_of_vllms_app_answer(tmp_path: Path) -> None:
    """Default-deny: around vLLM's real app, with an admin's credential, every vLLM route but the two published
    engine routes is refused in the OpenAI format (404, or 405 for a published path), and vLLM never sees it."""
    from vllm.entrypoints.launchers.app import build_app
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    reached: list[str] = []
    vllm_app = build_app(make_arg_parser(FlexibleArgumentParser()).parse_args(["--model", "/m"]))

    async def recording(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] == "http":
            reached.append(f"{scope['method']} {scope['path']}")
            await send({"type": "http.response.start", "status": 299, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await vllm_app(scope, receive, send)

    gated = build_gated_app(tmp_path, engine_app=recording)
    published = {("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("GET", "/v1/models")}
    published |= {("GET", "/openapi.json"), ("GET", "/metrics")}
    routes = vllm_routes()
    assert {("POST", "/tokenize"), ("POST", "/v1/responses"), ("GET", "/metrics"), ("POST", "/v1/messages")} <= set(
        routes
    )
    answers = {}
    for method, path in routes:
        url = path.replace("{response_id}", "x")
        answer = gated.client.request(
            method, url, headers=gated.headers("alice"), json={} if method == "POST" else None
        )
        answers[(method, path)] = answer.status_code
        if (method, path) not in published:
            assert answer.status_code in (404, 405), (method, path, answer.text)
            assert set(answer.json()["error"]) == {"message", "type", "param", "code"}
    assert reached == [], "requests the gate should have refused reached vLLM's app"
    assert answers[("GET", "/v1/models")] == 200 and answers[("GET", "/metrics")] == 200
    assert answers[("POST", "/v1/chat/completions")] == 400  # the gate read the empty body: not a valid request
    chat = {"model": SERVED_MODEL, **CHAT}
    assert gated.client.post("/v1/chat/completions", json=chat, headers=gated.headers("alice")).status_code == 299
    assert reached == ["POST /v1/chat/completions"]


def test_websockets_are_refused(gated: GatedApp) -> None:
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect), gated.client.websocket_connect("/v1/chat/completions"):
        pass
    assert gated.engine.received == []


def test_overload_is_a_503_in_openai_format_at_once(tmp_path: Path) -> None:
    """Beyond the requests one replica may run plus those allowed to wait, the gate refuses at once: 503, OpenAI's
    body, Retry-After (Serve's own bound would answer in plain text)."""
    gated = build_gated_app(tmp_path, serving={"max_ongoing_requests": 2, "max_queued_requests": 1})
    assert gated.middleware.max_in_flight == 3
    gated.middleware.in_flight = 3  # three requests are being served
    chat = {"model": SERVED_MODEL, **CHAT}
    answer = gated.client.post("/v1/chat/completions", json=chat, headers=gated.headers("bob"))
    assert_error(answer, 503, "capacity")
    assert int(answer.headers["retry-after"]) >= 1
    assert gated.engine.received == []
    gated.middleware.in_flight = 2
    assert gated.client.post("/v1/chat/completions", json=chat, headers=gated.headers("bob")).status_code == 200
    assert gated.middleware.in_flight == 2  # the served request gave its slot back


def test_key_changes_are_refused_where_each_gate_reads_its_own_copy_of_the_store(tmp_path: Path) -> None:
    """`auth.admin_key_changes: false` (llm_app with engine replicas on several nodes): a change through one gate would
    reach that gate's copy only, so creating and revoking are refused in OpenAI's format and nothing is written;
    listing still answers."""
    gated = build_gated_app(tmp_path, admin_key_changes=False)
    before = gated.config.auth.store_path.read_text()
    admin = gated.headers("alice")
    created = gated.client.post("/admin/keys", json={"name": "app", "role": "user"}, headers=admin)
    error = assert_error(created, 503, "each engine replica reads its own copy")
    assert "`lab-llm keys create`" in error["message"] and error["type"] == "service_unavailable_error"
    assert (
        "`lab-llm keys revoke`"
        in assert_error(gated.client.delete("/admin/keys/user-key", headers=admin), 503)["message"]
    )
    assert gated.config.auth.store_path.read_text() == before
    assert gated.client.get("/v1/models", headers=gated.headers("user-key")).status_code == 200
    assert sorted(key["name"] for key in gated.client.get("/admin/keys", headers=admin).json()) == [
        "restricted-key",
        "user-key",
    ]
    # Without the admin scope the answer is still 403, not a hint about the store.
    assert (
        gated.client.post("/admin/keys", json={"name": "x", "role": "user"}, headers=gated.headers("bob")).status_code
        == 403
    )


def test_an_admin_creates_and_revokes_keys_where_the_store_is_one(gated: GatedApp) -> None:
    admin = gated.headers("alice")
    created = gated.client.post("/admin/keys", json={"name": "app", "role": "user"}, headers=admin)
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert gated.client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert gated.client.delete("/admin/keys/app", headers=admin).status_code == 204
    assert_error(gated.client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}), 401)


def assert_error(answer: httpx.Response, status: int, message_part: str = "") -> dict:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert message_part in error["message"]
    assert error["code"] is None or isinstance(error["code"], str)
    return error


CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


# 1. The model that will serve the request is the one checked -------------------------------------------------
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_a_body_without_model_is_checked_against_the_model_that_serves_it(gated: GatedApp, path: str) -> None:
    body = CHAT if "chat" in path else {"prompt": "hi", "max_tokens": 2}
    for who in ("rita", "restricted-key"):
        assert_error(gated.client.post(path, json=body, headers=gated.headers(who)), 403, SERVED_MODEL)
        assert_error(gated.client.post(path, json={**body, "model": None}, headers=gated.headers(who)), 403)
        # vLLM serves its model for an empty `model` too (`_is_model_supported`): not a model "" that is not served.
        assert_error(gated.client.post(path, json={**body, "model": ""}, headers=gated.headers(who)), 403)
    assert gated.engine.received == []
    assert gated.client.post(path, json=body, headers=gated.headers("bob")).status_code == 200
    assert gated.client.post(path, json={**body, "model": ""}, headers=gated.headers("bob")).status_code == 200


def test_the_model_list_and_the_model_checks_agree(gated: GatedApp) -> None:
    assert gated.client.get("/v1/models", headers=gated.headers("rita")).json()["data"] == []
    listed = gated.client.get("/v1/models", headers=gated.headers("bob")).json()["data"]
    assert [model["id"] for model in listed] == [SERVED_MODEL]


@pytest.mark.parametrize("model", [5, 1.5, True, ["allowed-x"], {"id": "allowed-x"}])
def test_a_model_that_is_not_a_string_is_a_400(gated: GatedApp, model: object) -> None:
    answer = gated.client.post("/v1/chat/completions", json={**CHAT, "model": model}, headers=gated.headers("bob"))
    assert assert_error(answer, 400, "model")["param"] == "model"
    assert gated.engine.received == []


# 2. A token reflects the store as it is now ----------------------------------------------------------------
def test_a_token_stops_working_when_its_user_is_removed_or_disabled(gated: GatedApp) -> None:
    token_headers = gated.headers("bob")
    assert gated.client.get("/v1/models", headers=token_headers).status_code == 200
    gated.gate.store.remove_user("bob")
    assert_error(gated.client.get("/v1/models", headers=token_headers), 401, "no longer exists")
    gated.gate.store.set_user("bob", PASSWORD, "user")  # the same name again is not the old token's user...
    # ...but the token only says "bob": it works again for bob, which is what the store now says bob may do.
    assert gated.client.get("/v1/models", headers=token_headers).status_code == 200


def test_a_token_acts_with_the_role_the_store_gives_now(gated: GatedApp) -> None:
    headers = gated.headers("bob")
    assert gated.client.post("/v1/chat/completions", json=CHAT, headers=headers).status_code == 200
    gated.gate.store.set_user("bob", PASSWORD, "viewer")
    assert_error(gated.client.post("/v1/chat/completions", json=CHAT, headers=headers), 403, "scope 'chat'")


# 3. Login throttling stays bounded, also for the requests it refuses ---------------------------------------
def test_refused_logins_with_long_usernames_keep_memory_bounded(tmp_path: Path) -> None:
    gated = build_gated_app(tmp_path, login_attempts_per_client=5)
    statuses = [
        gated.client.post(
            "/auth/token", data={"username": f"{n}" + "u" * 200_000, "password": "wrong-pass"}
        ).status_code
        for n in range(40)
    ]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    # One entry per recorded failure's name plus the client, each a fixed-size digest, whatever the names' length;
    # the 35 refused logins added nothing.
    assert gated.gate.limiter.tracked() == 6
    assert all(len(key[1]) == 16 for key in gated.gate.limiter._failures)


def test_the_limiter_never_tracks_more_than_its_bound() -> None:
    limiter = LoginLimiter(per_user=3, per_client=3, window_s=300, max_tracked=100)
    for n in range(5000):
        assert limiter.retry_after(f"user-{n}", f"10.0.{n // 250}.{n % 250}") >= 0
        limiter.record_failure(f"user-{n}", f"10.0.{n // 250}.{n % 250}")
    assert limiter.tracked() <= 100
    before = limiter.tracked()
    for n in range(1000):
        limiter.retry_after(f"never-seen-{n}", "192.0.2.1")
    assert limiter.tracked() == before


# 4. Password hashing runs off the event loop ----------------------------------------------------------------
def test_a_slow_login_does_not_hold_up_other_requests(gated: GatedApp) -> None:
    release = threading.Event()
    order: list[str] = []
    verify = gated.gate.store.verify_password

    def slow_verify(username: str, password: str):
        release.wait(timeout=10)  # blocks its thread until /healthz has answered
        return verify(username, password)

    gated.gate.store.verify_password = slow_verify  # type: ignore[method-assign]

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=gated.app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://gate") as http:

            async def login() -> None:
                answer = await http.post("/auth/token", data={"username": "bob", "password": PASSWORD})
                order.append(f"login {answer.status_code}")

            async def health() -> None:
                await asyncio.sleep(0)
                answer = await http.get("/healthz")
                order.append(f"healthz {answer.status_code}")
                release.set()

            await asyncio.gather(login(), health())

    asyncio.run(scenario())
    assert order == ["healthz 200", "login 200"]


@pytest.mark.parametrize("change", ["create", "revoke"])
def test_a_key_change_waiting_for_the_stores_lock_does_not_hold_up_other_requests(gated: GatedApp, change: str) -> None:
    """Another process holding the store's file lock (`lab-llm keys`, an llm_app run) delays only the key change."""
    order: list[str] = []
    admin = gated.headers("alice")
    lock_path = gated.config.auth.store_path.with_name(gated.config.auth.store_path.name + ".lock")

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=gated.app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://gate") as http:

            async def key_change() -> None:
                if change == "create":
                    answer = await http.post("/admin/keys", json={"name": "app", "role": "user"}, headers=admin)
                else:
                    answer = await http.delete("/admin/keys/user-key", headers=admin)
                order.append(f"{change} {answer.status_code}")

            async def health() -> None:
                await asyncio.sleep(0.2)  # the key change is waiting for the lock by now
                answer = await http.get("/healthz")
                order.append(f"healthz {answer.status_code}")
                fcntl.flock(holder, fcntl.LOCK_UN)

            await asyncio.gather(key_change(), health())

    with open(lock_path, "a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)  # a separate open file: conflicts with the store's own flock
        # If the key change blocked the loop, /healthz could never release the lock: a timer does, and the order fails.
        fallback = threading.Timer(5, fcntl.flock, (holder, fcntl.LOCK_UN))
        fallback.start()
        try:
            asyncio.run(asyncio.wait_for(scenario(), timeout=30))
        finally:
            fallback.cancel()
    assert order == ["healthz 200", f"{change} {201 if change == 'create' else 204}"]


# 5. Oversized credentials are refused before any parsing ---------------------------------------------------
def test_an_oversized_bearer_is_refused_before_it_is_parsed(gated: GatedApp) -> None:
    def must_not_run(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("an oversized credential reached the token parser")

    gated.gate.tokens.verify = must_not_run  # type: ignore[method-assign]
    gated.gate.store.find_api_key = must_not_run  # type: ignore[method-assign]
    huge = "e" * 400_000 + "." + "p" * 900_000 + ".s"
    answer = gated.client.get("/v1/models", headers={"Authorization": f"Bearer {huge}"})
    assert_error(answer, 401, "too long")
    assert "e" * 100 not in answer.text


# 6. Any body the gate cannot read is a 400 in the OpenAI format --------------------------------------------
@pytest.mark.parametrize(
    ("raw", "message_part"),
    [
        (b"[" * 5000 + b"]" * 5000, "nests deeper"),
        (b'{"model": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001, "nests deeper"),
        (b'{"model": "allowed/x", "messages": ' + b"[" * 65 + b"]" * 65 + b"}", "nests deeper"),
        (b"{not json", "not valid JSON"),
        (b'{"model": "\xff\xfe"}', "not valid JSON"),
        (b'"just a string"', "JSON object"),
        (b"", "not valid JSON"),
    ],
)
def test_a_body_the_gate_cannot_read_is_a_400(gated: GatedApp, raw: bytes, message_part: str) -> None:
    headers = {**gated.headers("bob"), "Content-Type": "application/json"}
    for path in ("/v1/chat/completions", "/v1/completions"):
        assert_error(gated.client.post(path, content=raw, headers=headers), 400, message_part)
    assert gated.engine.received == []


# 7. GET /v1/models/{id} checks the id Ray will look up ------------------------------------------------------
def test_a_model_path_is_checked_as_ray_reads_it(gated: GatedApp) -> None:
    # Ray reads `--` in the path as `/`: `allowed--x` is the served `allowed/x`, which rita's `allowed-*` excludes.
    assert_error(gated.client.get("/v1/models/allowed--x", headers=gated.headers("rita")), 403, SERVED_MODEL)
    answer = gated.client.get("/v1/models/allowed--x", headers=gated.headers("bob"))
    assert answer.status_code == 200 and answer.json()["id"] == SERVED_MODEL
    assert gated.client.get(f"/v1/models/{SERVED_MODEL}", headers=gated.headers("bob")).json()["id"] == SERVED_MODEL
    error = assert_error(gated.client.get("/v1/models/allowed-x", headers=gated.headers("rita")), 404)
    assert error["code"] == "model_not_found"


def test_credentials_never_come_back_in_errors(gated: GatedApp) -> None:
    forged = gated.tokens["bob"][:-6] + "AAAAAA"
    for credential in (forged, "sk-lab-" + "q" * 43, "not-a-token-at-all-secret"):
        answer = gated.client.get("/v1/models", headers={"Authorization": f"Bearer {credential}"})
        assert answer.status_code == 401 and credential not in answer.text
