"""The Hugging Face Hub as the planner meets it, without the network: a cache on disk and a file endpoint.

``hub_cache`` lays a model out the way ``huggingface_hub.hf_hub_download`` leaves it (file_download.py,
``_hf_hub_download_to_cache_dir`` and the layout in ``hf_hub_download``'s docstring)::

    <HF_HOME>/hub/models--ORG--NAME/blobs/<etag>              the file's bytes, named by its git blob sha1
                                  /refs/<revision>            the commit the revision pointed at
                                  /snapshots/<commit>/<file>  a relative symlink to ../../blobs/<etag>

``HubStandin`` answers ``HEAD``/``GET /{repo_id}/resolve/{revision}/{filename}`` as the Hub does for small
(non-LFS, non-Xet) files, with the rules huggingface_hub relies on (utils/_http.py ``hf_raise_for_status``,
file_download.py ``get_hf_file_metadata``): ``X-Repo-Commit`` and ``ETag`` on every answer about a file;
``X-Error-Code`` ``RepoNotFound`` (401 without a token: the Hub does not tell a private repo from a missing one),
``GatedRepo`` (401 without a token, 403 with a token that was not granted access - the Hub's gated-model docs),
``RevisionNotFound`` (404) and ``EntryNotFound`` (404, with ``X-Repo-Commit``), with ``X-Error-Message``; a token
the Hub does not know is a 401 "Invalid credentials in Authorization header" without an error code.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from tests.unit.serve.plan.plan_inputs import model_path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def git_blob_sha1(content: bytes) -> str:
    """The id git gives a blob, which the Hub sends as the ETag of a non-LFS file."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content, usedforsecurity=False).hexdigest()


def model_files(fixture: str, safetensors_total: int | None = None, **extra: Any) -> dict[str, bytes]:
    """config.json from one of the planner's fixtures (and a safetensors index if a size is given)."""
    files = {"config.json": model_path(fixture).read_bytes()}
    if safetensors_total is not None:
        index = {"metadata": {"total_size": safetensors_total}, "weight_map": {"lm_head.weight": "model.safetensors"}}
        files["model.safetensors.index.json"] = json.dumps(index).encode()
    files.update({name: json.dumps(value).encode() for name, value in extra.items()})
    return files


def hub_cache(hf_home: Path, repo_id: str, files: Mapping[str, bytes], revision: str = "main") -> Path:
    """Lay ``files`` of ``repo_id`` into the cache under ``hf_home`` exactly as hf_hub_download does."""
    storage = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = storage / "snapshots" / COMMIT
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    (storage / "refs").mkdir(exist_ok=True)
    (storage / "refs" / revision).write_text(COMMIT)  # no newline, as huggingface_hub writes it
    for name, content in files.items():
        etag = git_blob_sha1(content)
        (storage / "blobs" / etag).write_bytes(content)
        link = snapshot / name
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(storage / "blobs" / etag, link.parent))
    return storage


@dataclass
class HubRepo:
    files: dict[str, bytes]
    gated: bool = False
    granted_tokens: frozenset[str] = frozenset()
    revisions: dict[str, str] = field(default_factory=lambda: {"main": COMMIT})


class _Handler(BaseHTTPRequestHandler):
    repos: ClassVar[dict[str, HubRepo]] = {}
    requests: ClassVar[list[tuple[str, str, str | None]]] = []

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        return

    def _error(self, status: int, code: str, message: str, commit: str | None = None) -> None:
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        body = json.dumps({"error": message}).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    def _answer(self) -> None:
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip() or None
        self.requests.append((self.command, self.path, token))
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            self._error(404, "EntryNotFound", "Not a resolve URL")
            return
        repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        if token is not None and token.startswith("hf_invalid"):
            # The Hub's answer to a token it does not know, whatever the repo (no X-Error-Code).
            self._error(401, "", "Invalid credentials in Authorization header")
            return
        repo = self.repos.get(repo_id)
        if repo is None:
            self._error(401, "RepoNotFound", "Repository not found")
            return
        if repo.gated and token is None:
            self._error(
                401,
                "GatedRepo",
                f"Access to model {repo_id} is restricted. You must have access to it and be authenticated.",
            )
            return
        if repo.gated and token not in repo.granted_tokens:
            self._error(
                403,
                "GatedRepo",
                f"Access to model {repo_id} is restricted and you are not in the authorized list.",
            )
            return
        commit = repo.revisions.get(revision, revision if revision in repo.revisions.values() else None)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return
        content = repo.files.get(filename)
        if content is None:
            self._error(404, "EntryNotFound", f"{filename} does not exist at {commit}", commit)
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", f'"{git_blob_sha1(content)}"')
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(content)

    do_HEAD = _answer
    do_GET = _answer


@contextmanager
def hub_standin(repos: dict[str, HubRepo]) -> Iterator[tuple[str, list[tuple[str, str, str | None]]]]:
    """A Hub stand-in on loopback: (its endpoint for HF_ENDPOINT, the requests it saw)."""
    handler = type("Handler", (_Handler,), {"repos": repos, "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.requests
    finally:
        server.shutdown()
        server.server_close()
