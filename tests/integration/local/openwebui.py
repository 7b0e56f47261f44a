"""The real OpenWebUI in front of the local stack: its venv, its process, and a relay that records its upstream
traffic.

OpenWebUI is the `open-webui` package from PyPI at the version the `openwebui` role deploys
(`openwebui-requirements.txt`; `tests/unit/test_openwebui_pin.py` keeps the two equal). It pins its own
dependencies exactly (FastAPI, pydantic, transformers, ...), which clash with the project's, so it gets a venv of
its own under `~/.cache/lab-llm/openwebui/<version>-<digest>/`, keyed by the requirements file and the Python
version, installed on first use and reused after. It runs offline on a free loopback port with a fresh data
directory (so the first account made through its API is the admin), in a process group of its own that `stop()`
ends whole.

Between OpenWebUI and lab-llm sits `RecordingRelay`, a transparent HTTP relay that keeps every request body and
response, so a test sees exactly what OpenWebUI sent upstream (its built-in tools, `tool_choice`, `max_tokens`)
and what lab-llm answered. It relays streamed answers chunk by chunk and never records headers (they carry the
API key).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests import pinned_venv

REQUIREMENTS = Path(__file__).with_name("openwebui-requirements.txt")
CACHE_ROOT = pinned_venv.CACHE_ROOT / "openwebui"  # the install: about 4 minutes on these machines, mostly downloads
START_TIMEOUT = 600  # seconds; about 50 s on an idle 2-core machine (database migrations, imports)


def pinned_version(requirements: Path = REQUIREMENTS) -> str:
    """The `open-webui==VERSION` pin of `requirements`. Raises ValueError when there is none."""
    return pinned_venv.pinned_version(requirements, "open-webui")


def ensure_venv(requirements: Path = REQUIREMENTS, cache_root: Path = CACHE_ROOT) -> Path:
    """The venv holding the pinned OpenWebUI (tests/pinned_venv.py); RuntimeError with pip's output on failure."""
    return pinned_venv.ensure_venv(requirements, "open-webui", cache_root, upgrade_pip=True)


@dataclass
class Exchange:
    """One request OpenWebUI sent upstream and what came back (`status` is None until the answer has begun)."""

    method: str
    path: str
    request: Any
    status: int | None = None
    content_type: str = ""
    body: bytearray = field(default_factory=bytearray)
    finished: bool = False

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def sse_events(self) -> list[Any]:
        """The `data:` payloads of a streamed answer, JSON-decoded, without the final `[DONE]`."""
        events = []
        for line in self.text.splitlines():
            if line.startswith("data:") and line[5:].strip() != "[DONE]":
                events.append(json.loads(line[5:]))
        return events


class RecordingRelay:
    """Relays HTTP from 127.0.0.1:`port` to `upstream` (``http://host:port``) and records every exchange.

    Answers go back as HTTP/1.0 with the connection closed at the end, so a stream passes through chunk by chunk
    without being re-framed. Use as a context manager; `exchanges` lists what was relayed, in arrival order.
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: Any) -> None:  # quiet: the test reads `exchanges`
                pass

            def do_GET(self) -> None:
                self._relay()

            def do_POST(self) -> None:
                self._relay()

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    parsed: Any = json.loads(body) if body else None
                except ValueError:
                    parsed = body.decode("utf-8", "replace")
                exchange = Exchange(self.command, self.path, parsed)
                with relay._lock:
                    relay.exchanges.append(exchange)
                skip = {"host", "connection", "accept-encoding", "content-length", "transfer-encoding"}
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                upstream_conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
                try:
                    upstream_conn.request(self.command, self.path, body=body or None, headers=headers)
                    answer = upstream_conn.getresponse()
                    exchange.status = answer.status
                    exchange.content_type = answer.getheader("Content-Type", "")
                    self.send_response(answer.status)
                    for key, value in answer.getheaders():
                        if key.lower() not in {"connection", "content-length", "transfer-encoding"}:
                            self.send_header(key, value)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    while chunk := answer.read1(65536):
                        exchange.body += chunk
                        self.wfile.write(chunk)
                        self.wfile.flush()
                finally:
                    upstream_conn.close()
                    exchange.finished = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="recording-relay", daemon=True)

    def __enter__(self) -> RecordingRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def snapshot(self) -> list[Exchange]:
        with self._lock:
            return list(self.exchanges)


@dataclass
class OpenWebUIProcess:
    """A running OpenWebUI: its URL, its log (stdout and stderr) and the process leading its process group."""

    base_url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, grace: float = 20.0) -> None:
        """End the whole process group: SIGTERM, then SIGKILL after `grace` seconds."""
        pgid = self.process.pid
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=wait)
            if self.process.poll() is not None and not _group_alive(pgid):
                return
        raise RuntimeError(f"OpenWebUI's process group {pgid} survived SIGKILL")


def _group_alive(pgid: int) -> bool:
    return subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, check=False).returncode == 0


@contextlib.contextmanager
def running(
    venv: Path, data_dir: Path, port: int, openai_base_url: str, openai_api_key: str
) -> Iterator[OpenWebUIProcess]:
    """Start OpenWebUI from `venv` on 127.0.0.1:`port`, wait until `/health` answers, stop it on exit.

    Offline as a lab without internet runs it: no model hub, no Ollama, embeddings through the OpenAI API (so it
    loads no local embedding model). Raises RuntimeError with the log's tail when it exits or does not come up
    within START_TIMEOUT seconds.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(Path.home()),
        "LANG": "C.UTF-8",
        "DATA_DIR": str(data_dir),
        "WEBUI_SECRET_KEY": secrets.token_urlsafe(32),
        "OFFLINE_MODE": "true",
        "HF_HUB_OFFLINE": "1",
        "ENABLE_OLLAMA_API": "false",
        "RAG_EMBEDDING_ENGINE": "openai",
        "OPENAI_API_BASE_URL": openai_base_url,
        "OPENAI_API_KEY": openai_api_key,
        "ANONYMIZED_TELEMETRY": "false",
        "DO_NOT_TRACK": "true",
        "SCARF_NO_ANALYTICS": "true",
    }
    log_path = data_dir / "openwebui.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [str(venv / "bin" / "open-webui"), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=data_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    owui = OpenWebUIProcess(f"http://127.0.0.1:{port}", log_path, process)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"OpenWebUI exited with {process.returncode}:\n{owui.log()[-4000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{owui.base_url}/health", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"OpenWebUI not up after {START_TIMEOUT} s:\n{owui.log()[-4000:]}")
            time.sleep(1)
        yield owui
    finally:
        owui.stop()
