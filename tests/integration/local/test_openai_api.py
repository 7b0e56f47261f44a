"""The deployed endpoint through the official `openai` SDK: models, chat and completions, streaming or not,
and every error path with its exact status and the OpenAI error format."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import openai
import pytest
import yaml

from lab_llm import tiny_model
from tests.integration.local.conftest import LocalDeployment

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def admin_token(local_deployment: LocalDeployment) -> str:
    answer = httpx.post(
        f"{local_deployment.base_url}/auth/token",
        data={"username": "admin", "password": local_deployment.admin_password},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0
    return body["access_token"]


def local_deployment_token(deployment: LocalDeployment, user: str, password: str) -> str:
    answer = httpx.post(f"{deployment.base_url}/auth/token", data={"username": user, "password": password}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


def client(deployment: LocalDeployment, credential: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{deployment.base_url}/v1", api_key=credential, max_retries=0, timeout=120)


def signing_secret(deployment: LocalDeployment) -> tuple[str, str]:
    keys = yaml.safe_load((deployment.state_dir / "etc" / "signing-keys.yaml").read_text())
    active = keys["active_kid"]
    return active, next(k["secret"] for k in keys["keys"] if k["kid"] == active)


def forged_token(deployment: LocalDeployment, **overrides: object) -> str:
    kid, secret = signing_secret(deployment)
    now = int(time.time())
    claims = {"sub": "admin", "role": "admin", "iat": now, "nbf": now, "exp": now + 600}
    claims |= {"iss": "lab-llm", "aud": "lab-llm", "jti": "x" * 32}
    claims |= overrides
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})


def test_models_lists_the_served_model(local_deployment: LocalDeployment, admin_token: str) -> None:
    models = client(local_deployment, admin_token).models.list()
    assert [model.id for model in models.data] == [local_deployment.model]


def test_chat_completion_with_an_api_key(local_deployment: LocalDeployment) -> None:
    answer = client(local_deployment, local_deployment.api_key).chat.completions.create(
        model=local_deployment.model, messages=[{"role": "user", "content": "Hello there"}], max_tokens=8
    )
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage.completion_tokens == 8 and answer.usage.prompt_tokens > 0
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 8


def test_a_request_without_max_tokens_stops_at_the_models_default(local_deployment: LocalDeployment) -> None:
    # The tiny model's generation_config.json says max_new_tokens (lab_llm.tiny_model); vLLM takes it as the default
    # max_tokens. Without it the random weights, which rarely emit EOS, would run to the end of the context (8192).
    limit = tiny_model.RECIPE["max_new_tokens"]
    assert limit < 8192
    answer = client(local_deployment, local_deployment.api_key).chat.completions.create(
        model=local_deployment.model, messages=[{"role": "user", "content": "Tell me everything"}]
    )
    if answer.choices[0].finish_reason == "length":
        assert answer.usage.completion_tokens == limit
    else:  # the model's own EOS came first
        assert answer.choices[0].finish_reason == "stop" and answer.usage.completion_tokens < limit
    # A request's own max_tokens still wins, above the default too.
    longer = client(local_deployment, local_deployment.api_key).chat.completions.create(
        model=local_deployment.model,
        messages=[{"role": "user", "content": "Tell me everything"}],
        max_tokens=limit + 8,
        seed=0,
    )
    assert longer.usage.completion_tokens > limit or longer.choices[0].finish_reason == "stop"


def test_chat_completion_streams_chunks(local_deployment: LocalDeployment, admin_token: str) -> None:
    stream = client(local_deployment, admin_token).chat.completions.create(
        model=local_deployment.model,
        messages=[{"role": "user", "content": "Count"}],
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6


def test_completion_and_its_sse_stream_end_with_done(local_deployment: LocalDeployment, admin_token: str) -> None:
    answer = client(local_deployment, admin_token).completions.create(
        model=local_deployment.model, prompt="The GPU", max_tokens=5
    )
    assert answer.usage.completion_tokens == 5 and answer.choices[0].text
    with httpx.stream(
        "POST",
        f"{local_deployment.base_url}/v1/completions",
        headers={"Authorization": f"Bearer {admin_token}"},
        json={"model": local_deployment.model, "prompt": "The GPU", "max_tokens": 4, "stream": True},
        timeout=120,
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert len(events) >= 2


def assert_openai_error(error: openai.APIStatusError, status: int, message_part: str) -> None:
    assert error.status_code == status
    body = error.response.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    assert message_part in body["error"]["message"]


@pytest.mark.parametrize(
    ("credential_kind", "message_part"),
    [
        ("garbage", "invalid API key"),
        ("garbage_jwt", "malformed token"),
        ("expired", "expired"),
        ("wrong_audience", "audience"),
        ("tampered", "signature"),
        ("alg_none", "algorithm 'none'"),
        ("unknown_api_key", "invalid API key"),
    ],
)
def test_bad_credentials_get_401(local_deployment: LocalDeployment, credential_kind: str, message_part: str) -> None:
    now = int(time.time())
    credentials = {
        "garbage": lambda: "not-a-token",
        "garbage_jwt": lambda: "not.a.token",
        "expired": lambda: forged_token(local_deployment, iat=now - 7200, nbf=now - 7200, exp=now - 3600),
        "wrong_audience": lambda: forged_token(local_deployment, aud="someone-else"),
        "tampered": lambda: forged_token(local_deployment)[:-4] + "AAAA",
        "alg_none": lambda: jwt.encode({"sub": "admin", "role": "admin"}, None, algorithm="none"),
        "unknown_api_key": lambda: "sk-lab-" + "z" * 43,
    }
    with pytest.raises(openai.AuthenticationError) as caught:
        client(local_deployment, credentials[credential_kind]()).models.list()
    assert_openai_error(caught.value, 401, message_part)
    assert caught.value.response.headers["www-authenticate"] == "Bearer"


def test_missing_credential_gets_401(local_deployment: LocalDeployment) -> None:
    answer = httpx.get(f"{local_deployment.base_url}/v1/models", timeout=30)
    assert answer.status_code == 401
    assert answer.json()["error"]["type"] == "authentication_error"


def test_unknown_model_gets_404(local_deployment: LocalDeployment, admin_token: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(local_deployment, admin_token).chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    assert_openai_error(caught.value, 404, "no-such-model")
    assert caught.value.response.json()["error"]["code"] == "model_not_found"


def test_prompt_over_max_model_len_gets_400(local_deployment: LocalDeployment, admin_token: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(local_deployment, admin_token).completions.create(
            model=local_deployment.model, prompt="lab " * 12000, max_tokens=4
        )
    assert_openai_error(caught.value, 400, "maximum context length")


def test_bad_json_gets_400(local_deployment: LocalDeployment, admin_token: str) -> None:
    answer = httpx.post(
        f"{local_deployment.base_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"},
        content=b"{not json",
        timeout=30,
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"


def add_user(deployment: LocalDeployment, name: str, role: str) -> None:
    lab_llm = str(Path(sys.executable).parent / "lab-llm")
    command = [lab_llm, "users", "add", name, f"--role={role}", "--password-stdin", "-c", str(deployment.config_file)]
    subprocess.run(command, input="viewer-password\n", text=True, check=True, capture_output=True)


def test_viewer_may_list_but_not_chat(local_deployment: LocalDeployment) -> None:
    add_user(local_deployment, "vera", "viewer")  # a token only speaks for a user the store has
    viewer = local_deployment_token(local_deployment, "vera", "viewer-password")
    assert client(local_deployment, viewer).models.list().data
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client(local_deployment, viewer).chat.completions.create(
            model=local_deployment.model, messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    assert_openai_error(caught.value, 403, "scope 'chat'")


def test_admin_creates_a_key_that_works_and_revokes_it(local_deployment: LocalDeployment, admin_token: str) -> None:
    headers = {"Authorization": f"Bearer {admin_token}"}
    created = httpx.post(
        f"{local_deployment.base_url}/admin/keys", headers=headers, json={"name": "pytest-app", "role": "user"}
    )
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert client(local_deployment, key).models.list().data
    listed = httpx.get(f"{local_deployment.base_url}/admin/keys", headers=headers).json()
    assert "pytest-app" in [entry["name"] for entry in listed] and all("key" not in entry for entry in listed)
    # A user-role key may not manage keys.
    forbidden = httpx.get(f"{local_deployment.base_url}/admin/keys", headers={"Authorization": f"Bearer {key}"})
    assert forbidden.status_code == 403
    revoked = httpx.delete(f"{local_deployment.base_url}/admin/keys/{created.json()['id']}", headers=headers)
    assert revoked.status_code == 204
    with pytest.raises(openai.AuthenticationError):
        client(local_deployment, key).models.list()


def test_failed_logins_are_throttled_with_429(local_deployment: LocalDeployment) -> None:
    url = f"{local_deployment.base_url}/token"  # the reference lab's earlier gateway's path answers too
    statuses = [
        httpx.post(url, data={"username": "mallory", "password": f"guess-{n}"}, timeout=30).status_code
        for n in range(6)
    ]
    assert statuses[:5] == [401] * 5
    assert statuses[5] == 429


def test_healthz_and_metrics_answer_without_a_token(local_deployment: LocalDeployment) -> None:
    assert httpx.get(f"{local_deployment.base_url}/healthz", timeout=30).json() == {"status": "ok"}
    assert httpx.get(f"{local_deployment.base_url}/readyz", timeout=30).json() == {"status": "ready"}
    metrics = httpx.get(f"{local_deployment.base_url}/metrics", timeout=30)
    assert metrics.status_code == 200
    assert "lab_llm_auth_decisions_total" in metrics.text
    # vLLM's own stat logger, not Ray's metrics agent: the engine's metrics under vLLM's names, beside the gate's.
    assert "vllm:cache_config_info{" in metrics.text


def test_overload_is_refused_at_once_instead_of_queueing_forever(local_deployment: LocalDeployment) -> None:
    """inventory/local bounds the queue (16 in flight, 64 waiting): a burst of 120 gets 503s for the rest."""
    import asyncio

    async def burst() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {local_deployment.api_key}"}
        body = {"model": local_deployment.model, "messages": [{"role": "user", "content": "go"}], "max_tokens": 48}
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(base_url=local_deployment.base_url, timeout=300, limits=limits) as http:
            answers = await asyncio.gather(
                *(http.post("/v1/chat/completions", headers=headers, json=body) for _ in range(120))
            )
        return answers

    answers = asyncio.run(burst())
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) > 0
    assert statuses.count(200) >= 16
    for refused in (answer for answer in answers if answer.status_code == 503):
        # OpenAI clients read JSON errors and retry after Retry-After; no plain-text "backpressure" from Serve.
        assert refused.json()["error"]["type"] == "service_unavailable_error"
        assert int(refused.headers["retry-after"]) >= 1
