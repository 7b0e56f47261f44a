"""The real OpenWebUI in front of the local stack, driven through its own HTTP API and socket.io as its browser
client drives it: the model list, a streamed chat with the built-in tools OpenWebUI attaches to every browser
chat, its title, tags and follow-up tasks, and no upstream error in its log.

OpenWebUI is the PyPI package at the version the `openwebui` role deploys (see `openwebui.py`); it reaches
lab-llm with the demo's user API key through a relay that records what it sent and what came back. The chat is
sent as OpenWebUI 0.12's browser sends it (`src/lib/components/chat/Chat.svelte`, `sendMessageSocket`): a new
chat with `parent_id: null`, the user message and the id of the answer to come, the socket.io session id (which
is what makes OpenWebUI attach its built-in tools, `utils/middleware.py`), and `background_tasks` for title,
tags and follow-ups; the answer comes back as socket.io `events` (0.12.4 streams Responses-style
`response:completion` pieces, then one `chat:completion` marked done) and is stored with the chat.
"""

from __future__ import annotations

import queue
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import socketio

from tests.integration.local.conftest import LocalDeployment, free_port
from tests.integration.local.openwebui import (
    Exchange,
    OpenWebUIProcess,
    RecordingRelay,
    ensure_venv,
    pinned_version,
    running,
)

pytestmark = pytest.mark.stack

PROMPT = "Which card runs the model fastest?"
CHAT_TIMEOUT = 600  # seconds for the chat and its background tasks; 8 to 12 s on a 2-core machine
# What OpenWebUI's task prompts ask the model to answer with (the JSON keys it parses), per task.
TASK_MARKERS = {"title": '{ "title":', "tags": '{ "tags":', "follow-ups": '{ "follow_ups":'}
# OpenWebUI's log lines (loguru: `time | LEVEL | where - message`) that say a call failed: every error, and the
# warning it writes for an upstream 4xx (events.py, publish_model_provider_request_failed).
FAILURE_LINE = re.compile(r"^\S+ \S+ \| (?:(?:ERROR|CRITICAL) +\||WARNING +\| .* - Upstream .* request failed)")


@dataclass
class OpenWebUI:
    process: OpenWebUIProcess
    relay: RecordingRelay
    token: str

    @property
    def base_url(self) -> str:
        return self.process.base_url

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.request(method, f"{self.base_url}{path}", headers=headers, timeout=300, **kwargs)


@dataclass
class BrowserChat:
    chat_id: str
    message_id: str
    events: list[dict[str, Any]]  # socket.io `events` for this chat, in arrival order
    exchanges: list[Exchange]  # what OpenWebUI sent upstream meanwhile
    stored: dict[str, Any]  # the chat as OpenWebUI stored it

    def of_type(self, kind: str) -> list[Any]:
        return [event["data"].get("data") for event in self.events if event["data"].get("type") == kind]

    def completions(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.method == "POST" and e.path == "/v1/chat/completions"]


@pytest.fixture(scope="module")
def openwebui(local_deployment: LocalDeployment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenWebUI]:
    venv = ensure_venv()
    data_dir = tmp_path_factory.mktemp("openwebui")
    with (
        RecordingRelay(local_deployment.base_url) as relay,
        running(
            venv,
            data_dir,
            free_port(),
            openai_base_url=f"http://127.0.0.1:{relay.port}/v1",
            openai_api_key=local_deployment.api_key,
        ) as process,
    ):
        # The first account on a fresh OpenWebUI becomes its admin.
        answer = httpx.post(
            f"{process.base_url}/api/v1/auths/signup",
            json={"name": "Lab Admin", "email": "admin@lab.example", "password": secrets.token_urlsafe(18)},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["role"] == "admin"
        yield OpenWebUI(process, relay, answer.json()["token"])


def _message_text(message: dict[str, Any]) -> str:
    """The answer's text as OpenWebUI 0.12 stores it: Responses-style `output` items (`utils/misc.py`,
    get_output_text), with the older `content` string as a fallback."""
    texts = []
    for item in message.get("output") or []:
        if isinstance(item, dict) and item.get("type") == "message":
            text = "".join(str(part["text"]) for part in item.get("content") or [] if part.get("text") is not None)
            if text.strip():
                texts.append(text)
    return "\n".join(texts) if texts else message.get("content") or ""


def _visible(text: str) -> str:
    """`text` with only its printable, non-space characters other than U+FFFD.

    OpenWebUI 0.12.4 stores an answer through `utils/misc.py` sanitize_text_for_db, which drops NUL and surrogate
    code points (PostgreSQL cannot store them), and re-renders it, which has been seen to drop a space and a U+FFFD.
    The tiny model's random byte tokens produce all of these; what is left must match exactly."""
    return "".join(char for char in text if char.isprintable() and not char.isspace() and char != "\ufffd")


def _wait_for_chat(
    openwebui: OpenWebUI, chat_id: str, message_id: str, received: queue.Queue[dict[str, Any]], before: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Collect this chat's socket.io events until the chat and its background tasks are over; return them with the
    stored chat.

    Over means either of what OpenWebUI 0.12.4 does at the end (main.py, process_chat; utils/middleware.py,
    background_tasks_handler): the stored answer is `done` and the relay saw each task's request answered (the tasks
    run after the answer, in the order follow-ups, title, tags, so title and follow-ups are stored and sent by
    then), or the stored answer carries an error (no tasks follow), or `chat:active` went false (sent when the chat's
    last task ends, tasks included).
    """
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + CHAT_TIMEOUT
    while True:
        while True:
            try:
                event = received.get(timeout=2)
            except queue.Empty:
                break
            if event.get("chat_id") == chat_id:
                events.append(event)
        stored = openwebui.api("GET", f"/api/v1/chats/{chat_id}").json()
        message = stored.get("chat", {}).get("history", {}).get("messages", {}).get(message_id) or {}
        exchanges = openwebui.relay.snapshot()[before:]
        tasks_answered = all(
            any(e.finished for e in _task_requests(exchanges, marker)) for marker in TASK_MARKERS.values()
        )
        chat_over = any(
            event["data"].get("type") == "chat:active" and not (event["data"].get("data") or {}).get("active")
            for event in events
        )
        if chat_over or message.get("error") or (message.get("done") and tasks_answered):
            time.sleep(1)  # what OpenWebUI sends right after the last task's answer
            while not received.empty():
                event = received.get_nowait()
                if event.get("chat_id") == chat_id:
                    events.append(event)
            return events, openwebui.api("GET", f"/api/v1/chats/{chat_id}").json()
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the chat and its tasks did not finish within {CHAT_TIMEOUT} s; stored answer done: "
                f"{message.get('done')}; upstream requests: {[(e.path, e.status, e.finished) for e in exchanges]}; "
                f"events: {[event['data'].get('type') for event in events]}\n{openwebui.process.log()[-3000:]}"
            )


def _task_requests(exchanges: list[Exchange], marker: str) -> list[Exchange]:
    """The non-streamed chat completions whose last message is the task prompt holding `marker`."""
    return [
        e
        for e in exchanges
        if e.method == "POST"
        and e.path == "/v1/chat/completions"
        and isinstance(e.request, dict)
        and not e.request.get("stream")
        and marker in str(e.request["messages"][-1]["content"])
    ]


@pytest.fixture(scope="module")
def browser_chat(openwebui: OpenWebUI, local_deployment: LocalDeployment) -> BrowserChat:
    received: queue.Queue[dict[str, Any]] = queue.Queue()
    client = socketio.Client(reconnection=False)
    client.on("events", received.put)
    client.connect(
        openwebui.base_url,
        socketio_path="/ws/socket.io",
        transports=["websocket"],
        auth={"token": openwebui.token},
        wait_timeout=30,
    )
    try:
        client.emit("user-join", {"auth": {"token": openwebui.token}})
        models = openwebui.api("GET", "/api/models").json()["data"]
        me = openwebui.api("GET", "/api/v1/auths/").json()
        before = len(openwebui.relay.snapshot())
        user_message_id, message_id = str(uuid.uuid4()), str(uuid.uuid4())
        payload = {
            "stream": True,
            "model": local_deployment.model,
            "params": {"model_controls": {}},
            "tool_ids": [],
            "tool_servers": [],
            "features": {"voice": False, "image_generation": False, "code_interpreter": False, "web_search": False},
            "variables": {"{{USER_NAME}}": me["name"], "{{USER_EMAIL}}": me["email"], "{{USER_LANGUAGE}}": "en-US"},
            "chat_variables": {},
            "model_item": next(model for model in models if model["id"] == local_deployment.model),
            "session_id": client.get_sid(),
            "id": message_id,
            "parent_id": None,
            "user_message": {
                "id": user_message_id,
                "parentId": None,
                "childrenIds": [message_id],
                "role": "user",
                "user": {"id": me["id"], "name": me["name"]},
                "user_id": me["id"],
                "content": PROMPT,
                "timestamp": int(time.time()),
                "models": [local_deployment.model],
            },
            "background_tasks": {"title_generation": True, "tags_generation": True, "follow_up_generation": True},
        }
        answer = openwebui.api("POST", "/api/chat/completions", json=payload)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] is True and len(answer.json()["task_ids"]) == 1, answer.text
        chat_id = answer.json()["chat_id"]
        events, stored = _wait_for_chat(openwebui, chat_id, message_id, received, before)
        return BrowserChat(chat_id, message_id, events, openwebui.relay.snapshot()[before:], stored)
    finally:
        client.disconnect()


def test_runs_the_pinned_release(openwebui: OpenWebUI) -> None:
    answer = openwebui.api("GET", "/api/version")
    assert answer.status_code == 200
    assert answer.json()["version"] == pinned_version()


def test_lists_the_served_model(openwebui: OpenWebUI, local_deployment: LocalDeployment) -> None:
    answer = openwebui.api("GET", "/api/models", params={"refresh": "true"})
    assert answer.status_code == 200, answer.text
    models = {model["id"]: model for model in answer.json()["data"]}
    assert local_deployment.model in models, sorted(models)
    assert models[local_deployment.model]["owned_by"] == "openai"
    listings = [e for e in openwebui.relay.snapshot() if e.method == "GET" and e.path == "/v1/models"]
    assert listings and all(e.status == 200 for e in listings)


def test_browser_chat_attaches_the_built_in_tools_and_streams_the_answer(browser_chat: BrowserChat) -> None:
    chats = [e for e in browser_chat.completions() if e.request.get("stream")]
    assert len(chats) == 1, [e.request for e in browser_chat.completions()]
    sent = chats[0].request
    # What the browser causes: OpenWebUI's built-in tools as OpenAI functions, without a tool_choice
    # (which OpenAI reads as "auto").
    tools = sent.get("tools") or []
    assert tools and all(tool["type"] == "function" for tool in tools), sent
    assert {"get_current_timestamp", "search_chats"} <= {tool["function"]["name"] for tool in tools}
    assert "tool_choice" not in sent
    assert chats[0].status == 200, f"lab-llm answered the chat with {chats[0].status}: {chats[0].text}"
    assert "text/event-stream" in chats[0].content_type
    assert chats[0].text.rstrip().endswith("data: [DONE]")
    streamed = "".join(
        chunk["choices"][0]["delta"].get("content") or "" for chunk in chats[0].sse_events() if chunk.get("choices")
    )
    assert streamed.strip()

    # What the browser sees (utils/middleware.py, 0.12.4): the answer in pieces as Responses-style
    # `response:completion` events, then one `chat:completion` marked done, and no error.
    assert browser_chat.of_type("chat:message:error") == []
    pieces = [p for p in browser_chat.of_type("response:completion") if p.get("type", "").endswith(".delta")]
    assert pieces and "".join(p.get("delta") or "" for p in pieces).strip(), browser_chat.of_type("response:completion")
    finals = [c for c in browser_chat.of_type("chat:completion") if c.get("done")]
    assert len(finals) == 1 and _message_text({"output": finals[0]["output"]}).strip() == streamed.strip()
    # What OpenWebUI stored: the same answer, done, without an error.
    message = browser_chat.stored["chat"]["history"]["messages"][browser_chat.message_id]
    assert not message.get("error"), message.get("error")
    assert message["done"] is True
    # OpenWebUI sanitizes and re-renders the answer it stores, while its own final event above matched the stream
    # exactly; so the stored text is compared on what survives that (see _visible).
    assert _visible(_message_text(message)) == _visible(streamed)


@pytest.mark.parametrize("task", sorted(TASK_MARKERS))
def test_background_task_is_answered(browser_chat: BrowserChat, task: str) -> None:
    asked = _task_requests(browser_chat.exchanges, TASK_MARKERS[task])
    assert len(asked) == 1, f"OpenWebUI asked for the {task} {len(asked)} times"
    exchange = asked[0]
    sent = {key: value for key, value in exchange.request.items() if key != "messages"}
    assert exchange.status == 200, f"lab-llm answered the {task} task ({sent}) with {exchange.status}: {exchange.text}"
    assert exchange.json()["choices"][0]["message"]["role"] == "assistant"


def test_background_tasks_reach_the_browser(browser_chat: BrowserChat) -> None:
    assert browser_chat.of_type("chat:title"), "no title event"
    # OpenWebUI sends follow-ups (a list, empty when the model's text is not the JSON it asked for) only when the
    # model answered.
    follow_ups = browser_chat.of_type("chat:message:follow_ups")
    assert len(follow_ups) == 1 and isinstance(follow_ups[0]["follow_ups"], list), follow_ups
    # ... and stores them: the title on the chat, the follow-ups on the answer.
    assert browser_chat.stored["title"] not in ("", "New Chat")
    message = browser_chat.stored["chat"]["history"]["messages"][browser_chat.message_id]
    assert message["followUps"] == follow_ups[0]["follow_ups"]


@pytest.mark.parametrize("task", ["title", "tags", "follow_up"])
def test_task_endpoint_answers(openwebui: OpenWebUI, browser_chat: BrowserChat, task: str) -> None:
    messages = [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": "The RTX 3090 does."}]
    answer = openwebui.api(
        "POST",
        f"/api/v1/tasks/{task}/completions",
        json={"model": browser_chat.stored["chat"]["models"][0], "messages": messages, "chat_id": browser_chat.chat_id},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["role"] == "assistant"


def test_no_upstream_error_in_the_log(openwebui: OpenWebUI, browser_chat: BrowserChat) -> None:
    failures = [line for line in openwebui.process.log().splitlines() if FAILURE_LINE.match(line)]
    assert failures == []
