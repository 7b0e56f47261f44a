"""CPU cost of lab-llm's gate alone, in process: the same engine route with and without the gate's ASGI middleware.

No Ray, no engine, no network: requests go through httpx's ASGI transport to a route that answers `{}` at once,
so the difference between the runs is what the replica's whole wrapper (CORS, request id, the gate: bearer parsing,
API-key or JWT check, scope, admission bound, body read and validated with the engine's request class, model check,
the body replayed and the answer relayed) costs per request. `serve_overhead.py` measures the whole stack; this
attributes a part of it.

Usage: `.venv/bin/python bench/gate_overhead.py [--requests 3000]` (a few seconds).
"""

# No `from __future__ import annotations`: FastAPI must see the route's `Request` annotation as a class.

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

CHAT_BODY = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


def build_apps(workdir: Path) -> tuple[object, object, dict[str, str]]:
    """An ungated and a gated app around the same route, and credentials (`api_key`, `token`) for the gated one."""
    import yaml
    from fastapi import FastAPI, Request

    from lab_llm.app.server import gated_asgi_app
    from lab_llm.auth.tokens import generate_signing_keys_document
    from lab_llm.config import parse_config

    (workdir / "keys.yaml").write_text(yaml.safe_dump(generate_signing_keys_document("k1")))
    config = parse_config(
        {
            "engine": {"model": str(workdir), "served_model_name": CHAT_BODY["model"]},
            "auth": {"store_path": str(workdir / "store.yaml"), "signing_keys_path": str(workdir / "keys.yaml")},
        }
    )

    async def chat(request: Request) -> dict:
        await request.body()
        return {}

    async def healthy() -> None:
        return None

    plain = FastAPI()
    plain.post("/v1/chat/completions")(chat)
    gated, _routes, gate, _middleware = gated_asgi_app(config, plain, engine_health=healthy)
    _record, api_key, _created = gate.store.add_api_key("bench", "user")
    token = gate.tokens.issue("bench-user", "user")
    gate.store.set_user("bench-user", "bench-password", "user")
    return plain, gated, {"api_key": api_key, "token": token}


async def cpu_per_request_us(app: object, credential: str | None, requests: int) -> float:
    import httpx

    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", headers=headers) as client:
        for _ in range(50):  # warm-up
            (await client.post("/v1/chat/completions", json=CHAT_BODY)).raise_for_status()
        started = time.process_time()
        for _ in range(requests):
            response = await client.post("/v1/chat/completions", json=CHAT_BODY)
            if response.status_code != 200:
                raise RuntimeError(f"gated route answered {response.status_code}: {response.text[:200]}")
        return (time.process_time() - started) * 1e6 / requests


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each variant; the median is reported")
    args = parser.parse_args(argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="lab-gate-bench-") as directory:
        plain, gated, credentials = build_apps(Path(directory))
        variants = {
            "no gate": (plain, None),
            "gate, API key": (gated, credentials["api_key"]),
            "gate, access token (JWT)": (gated, credentials["token"]),
        }
        results = {
            name: statistics.median(
                asyncio.run(cpu_per_request_us(app, credential, args.requests)) for _ in range(args.repeats)
            )
            for name, (app, credential) in variants.items()
        }
    baseline = results["no gate"]
    print(f"CPU per request, in process (median of {args.repeats} x {args.requests} requests, client included)")
    for name, value in results.items():
        added = "" if name == "no gate" else f"  (gate adds {value - baseline:6.0f} us)"
        print(f"  {name:<26} {value:7.0f} us{added}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
