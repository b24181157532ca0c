"""The official `openai` SDK, pointed at the proxy, works as it does against OpenAI."""

from __future__ import annotations

import openai
import pytest
from openai import AsyncOpenAI

from tests.integration.provider_proxy.conftest import MODEL, Stack
from tests.support.internal_auth import PROVIDER_TOKEN

pytestmark = pytest.mark.integration

PROVIDERS = ["kimi", "glm"]
MESSAGES: list[openai.types.chat.ChatCompletionMessageParam] = [
    {"role": "developer", "content": "Be brief."},
    {"role": "user", "content": "Why is the sky blue?"},
]


def sdk(stack: Stack) -> AsyncOpenAI:
    # The proxy holds the provider keys; the SDK insists on one of its own.
    return AsyncOpenAI(base_url=f"{stack.url}/v1", api_key=PROVIDER_TOKEN, max_retries=0)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_sdk_json_completion(stack: Stack, provider: str) -> None:
    async with sdk(stack) as client:
        completion = await client.chat.completions.create(
            model=MODEL[provider], messages=MESSAGES, max_completion_tokens=200, temperature=0
        )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content is not None
    assert '"Why is the sky blue?"' in choice.message.content
    assert completion.model == MODEL[provider]
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert 0 < (usage.prompt_tokens_details.cached_tokens or 0) < usage.prompt_tokens


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("include_usage", [False, True])
async def test_sdk_stream_matches_json(stack: Stack, provider: str, include_usage: bool) -> None:
    async with sdk(stack) as client:
        completion = await client.chat.completions.create(model=MODEL[provider], messages=MESSAGES)
        stream = await client.chat.completions.create(
            model=MODEL[provider],
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": include_usage},
        )
        pieces: list[str] = []
        finish_reasons = []
        usages = []
        async for chunk in stream:
            for choice in chunk.choices:
                pieces.append(choice.delta.content or "")
                if choice.finish_reason:
                    finish_reasons.append(choice.finish_reason)
            if chunk.usage is not None:
                usages.append(chunk.usage)
    assert "".join(pieces) == completion.choices[0].message.content
    assert finish_reasons == ["stop"]
    assert usages == [completion.usage]


async def test_sdk_lists_models(stack: Stack) -> None:
    async with sdk(stack) as client:
        models = {m.id: m.owned_by async for m in client.models.list()}
        one = await client.models.retrieve("kimi-latest")
    assert models[MODEL["kimi"]] == "kimi"
    assert models[MODEL["glm"]] == "glm"
    assert one.owned_by == "kimi"


async def test_sdk_sees_proxy_errors_as_typed_exceptions(stack: Stack) -> None:
    async with sdk(stack) as client:
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        await stack.global_fault("error_500", "glm")
        with pytest.raises(openai.InternalServerError) as upstream:
            await client.chat.completions.create(model=MODEL["glm"], messages=MESSAGES)
    assert bad.value.code == "model_not_found"
    assert upstream.value.status_code == 502
    assert upstream.value.code == "server_error"
