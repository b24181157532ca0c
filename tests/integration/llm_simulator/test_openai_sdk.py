"""The official `openai` SDK talks to both shapes directly, as it would to the real APIs."""

from __future__ import annotations

import openai
import pytest
from openai import AsyncOpenAI

from tests.integration.llm_simulator.conftest import API_KEY, MODEL, PREFIX, Simulator

pytestmark = pytest.mark.integration

PROVIDERS = ["kimi", "glm"]
MESSAGES: list[openai.types.chat.ChatCompletionMessageParam] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Why is the sky blue?"},
]


def sdk(sim: Simulator, provider: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{sim.url}{PREFIX[provider]}", api_key=API_KEY, max_retries=0)


def cached_tokens(provider: str, usage: openai.types.CompletionUsage) -> int:
    if provider == "kimi":
        return int(getattr(usage, "cached_tokens"))  # noqa: B009 - Moonshot's extra field
    assert usage.prompt_tokens_details is not None
    return int(usage.prompt_tokens_details.cached_tokens or 0)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_sdk_json_completion(sim: Simulator, provider: str) -> None:
    async with sdk(sim, provider) as client:
        completion = await client.chat.completions.create(model=MODEL[provider], messages=MESSAGES)
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content is not None
    assert '"Why is the sky blue?"' in choice.message.content
    assert completion.model == MODEL[provider]
    assert completion.usage is not None
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert 0 < cached_tokens(provider, completion.usage) < completion.usage.prompt_tokens


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_sdk_stream_matches_json(sim: Simulator, provider: str) -> None:
    async with sdk(sim, provider) as client:
        completion = await client.chat.completions.create(model=MODEL[provider], messages=MESSAGES)
        stream = await client.chat.completions.create(
            model=MODEL[provider],
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces: list[str] = []
        finish_reasons = []
        usage = None
        async for chunk in stream:
            for choice in chunk.choices:
                pieces.append(choice.delta.content or "")
                if choice.finish_reason:
                    finish_reasons.append(choice.finish_reason)
            if chunk.usage is not None:
                usage = chunk.usage
    assert "".join(pieces) == completion.choices[0].message.content
    assert finish_reasons == ["stop"]
    assert usage is not None and completion.usage is not None
    assert usage.completion_tokens == completion.usage.completion_tokens
    assert cached_tokens(provider, usage) == cached_tokens(provider, completion.usage)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_sdk_lists_models(sim: Simulator, provider: str) -> None:
    async with sdk(sim, provider) as client:
        models = [m.id async for m in client.models.list()]
    assert MODEL[provider] in models


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_sdk_sees_provider_errors_as_its_own_exceptions(
    sim: Simulator, provider: str
) -> None:
    async with sdk(sim, provider) as client:
        with pytest.raises(openai.RateLimitError) as limited:
            await client.chat.completions.create(
                model=MODEL[provider],
                messages=MESSAGES,
                extra_headers={"X-Simulator-Fault": "rate_limit"},
            )
        assert limited.value.response.headers["Retry-After"] == "1"
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(
                model=MODEL[provider],
                messages=MESSAGES,
                extra_headers={"X-Simulator-Fault": "error_500"},
            )
        unknown = openai.NotFoundError if provider == "kimi" else openai.BadRequestError
        with pytest.raises(unknown):
            await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(
                model=MODEL[provider],
                messages=MESSAGES,
                extra_headers={"Authorization": "Basic bm90OmJlYXJlcg=="},
            )
