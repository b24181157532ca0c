"""Chat completions and models in both provider shapes, JSON and SSE, over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.llm_simulator.conftest import (
    MODEL,
    PREFIX,
    Simulator,
    chat_body,
    chunks,
    sse_payloads,
    streamed_text,
)

pytestmark = pytest.mark.integration

PROVIDERS = ["kimi", "glm"]
CONVERSATION = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Name a prime"},
    {"role": "assistant", "content": "Seven."},
    {"role": "user", "content": "Another one?"},
]


def cached(provider: str, usage: dict[str, Any]) -> int:
    if provider == "kimi":
        return int(usage["cached_tokens"])
    return int(usage["prompt_tokens_details"]["cached_tokens"])


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_json_completion_is_deterministic(
    client: httpx.AsyncClient, sim: Simulator, provider: str
) -> None:
    first = await client.post(sim.chat_url(provider), json=chat_body(provider))
    second = await client.post(sim.chat_url(provider), json=chat_body(provider))
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    body, again = first.json(), second.json()
    assert body["model"] == MODEL[provider]
    assert body["choices"][0]["finish_reason"] == "stop"
    content = body["choices"][0]["message"]["content"]
    assert '"What is the capital of France?"' in content
    assert again["choices"][0]["message"]["content"] == content
    assert again["usage"] == body["usage"]
    assert body["id"] != again["id"]
    assert ("request_id" in body) is (provider == "glm")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_usage_reports_cached_tokens_where_the_provider_does(
    client: httpx.AsyncClient, sim: Simulator, provider: str
) -> None:
    single = (await client.post(sim.chat_url(provider), json=chat_body(provider))).json()["usage"]
    body = {"model": MODEL[provider], "messages": CONVERSATION}
    multi = (await client.post(sim.chat_url(provider), json=body)).json()["usage"]
    assert cached(provider, single) == 0
    assert 0 < cached(provider, multi) < multi["prompt_tokens"]
    assert multi["total_tokens"] == multi["prompt_tokens"] + multi["completion_tokens"]
    if provider == "kimi":
        assert "prompt_tokens_details" not in multi
    else:
        assert "cached_tokens" not in multi


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("include_usage", [False, True])
async def test_stream_carries_the_same_text_and_usage_as_json(
    client: httpx.AsyncClient, sim: Simulator, provider: str, include_usage: bool
) -> None:
    body = {"model": MODEL[provider], "messages": CONVERSATION}
    plain = (await client.post(sim.chat_url(provider), json=body)).json()
    stream_body: dict[str, Any] = {**body, "stream": True}
    if include_usage:
        stream_body["stream_options"] = {"include_usage": True}
    async with client.stream("POST", sim.chat_url(provider), json=stream_body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        parsed = chunks(await sse_payloads(response))

    assert streamed_text(parsed) == plain["choices"][0]["message"]["content"]
    assert len({c["id"] for c in parsed}) == 1
    finish = [c for c in parsed if c["choices"] and c["choices"][0].get("finish_reason")]
    assert len(finish) == 1
    assert finish[0]["choices"][0]["finish_reason"] == "stop"
    if provider == "kimi":
        assert finish[0]["choices"][0]["usage"] == plain["usage"]
        trailers = [c for c in parsed if c["choices"] == []]
        assert len(trailers) == (1 if include_usage else 0)
        if include_usage:
            assert parsed[-1] is trailers[0]
            assert trailers[0]["usage"] == plain["usage"]
    else:
        assert parsed[-1] is finish[0]
        assert finish[0]["usage"] == plain["usage"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_models(client: httpx.AsyncClient, sim: Simulator, provider: str) -> None:
    response = await client.get(f"{sim.url}{PREFIX[provider]}/models")
    assert response.status_code == 200
    ids = [m["id"] for m in response.json()["data"]]
    assert MODEL[provider] in ids


@pytest.mark.parametrize(
    ("provider", "status", "error"),
    [
        ("kimi", 404, {"type": "resource_not_found_error"}),
        ("glm", 400, {"code": "1211"}),
    ],
)
async def test_unknown_model_in_the_providers_shape(
    client: httpx.AsyncClient, sim: Simulator, provider: str, status: int, error: dict[str, str]
) -> None:
    # The other provider's model is as unknown as a made-up one.
    for model in ("gpt-4o", MODEL["glm" if provider == "kimi" else "kimi"]):
        body = {**chat_body(provider), "model": model}
        response = await client.post(sim.chat_url(provider), json=body)
        assert response.status_code == status
        assert error.items() <= response.json()["error"].items()
        assert model in response.json()["error"]["message"]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
    ids=["missing", "empty", "basic"],
)
async def test_auth_required_on_every_provider_endpoint(
    sim: Simulator, provider: str, headers: dict[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=sim.url, headers=headers) as anonymous:
        chat = await anonymous.post(sim.chat_url(provider), json=chat_body(provider))
        models = await anonymous.get(f"{PREFIX[provider]}/models")
    for response in (chat, models):
        assert response.status_code == 401
        error = response.json()["error"]
        if provider == "kimi":
            assert error["type"] == "invalid_authentication_error"
        else:
            assert error["code"] == ("1001" if not headers else "1000")


async def test_any_non_empty_bearer_token_is_accepted(sim: Simulator) -> None:
    async with httpx.AsyncClient(headers={"Authorization": "bearer x"}) as other:
        response = await other.post(sim.chat_url("glm"), json=chat_body("glm"))
    assert response.status_code == 200


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{oops", "not valid JSON"),
        (b'{"model": "glm-4.5"}', "messages"),
        (b'{"model": "glm-4.5", "messages": [], "stream": true}', "messages"),
        (b'{"model": "glm-4.5", "messages": [{"role": "user", "content": 1}]}', "content"),
    ],
)
async def test_bad_bodies_get_a_400_in_the_providers_shape(
    client: httpx.AsyncClient, sim: Simulator, provider: str, content: bytes, fragment: str
) -> None:
    response = await client.post(
        sim.chat_url(provider), content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert fragment in error["message"]
    assert error.get("type") == "invalid_request_error" or error.get("code") == "1214"
