"""Conversation memory against the real storage-adapter: history budgets, a hanging or
slow storage, lost answers, the client's identity on every storage request."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.ws_gateway.stack import TIME_SCALE, Stack, eventually, final, native
from tests.support.faulty_http import hanging_server, relay
from tests.support.internal_auth import STORAGE_TOKEN, bearer

pytestmark = pytest.mark.integration


def new_cid() -> str:
    return f"conv-{uuid.uuid4().hex[:8]}"


async def seed(stack: Stack, cid: str, contents: list[str]) -> None:
    """Store a conversation straight into storage-adapter: user/assistant in turn."""
    headers = {"X-EXAI-Client-ID": "default", **bearer(STORAGE_TOKEN)}
    async with httpx.AsyncClient(base_url=stack.storage_url, timeout=30, headers=headers) as http:
        created = await http.post("/v1/conversations", json={"continuation_id": cid})
        assert created.status_code in (200, 201), created.text
        for index, content in enumerate(contents):
            body = {
                "role": "user" if index % 2 == 0 else "assistant",
                "content": content,
                "idempotency_key": f"seed-{cid}-{index}",
            }
            stored = await http.post(f"/v1/conversations/{cid}/messages", json=body)
            assert stored.status_code == 201, stored.text


async def chat(gateway: Any, arguments: dict[str, Any], request_id: str = "r1") -> Any:
    async with native(gateway) as client:
        return final(await client.run("chat", arguments, request_id))


# --- point 2: history within a budget -----------------------------------------------


async def test_history_past_the_proxys_body_limit_is_trimmed_newest_first(stack: Stack) -> None:
    # 40 messages of ~250K characters: ~10 MB, over provider-proxy's 8 MiB body limit.
    # Sent whole, every call on this conversation would fail for good.
    cid = new_cid()
    await seed(stack, cid, [f"m{i:02d} " + "x" * 250_000 for i in range(40)])
    gateway, _ = await stack.start_gateway(EXAI_HISTORY_BUDGET_CHARS_BY_MODEL="kimi-=100000000")
    result = await chat(gateway, {"prompt": "Still there?", "continuation_id": cid})
    assert result["op"] == "call_tool_res", result
    memory = result["metadata"]["memory"]
    assert memory["read"] == "loaded"
    assert 20 <= memory["history_messages"] < 40
    assert memory["history_messages"] + memory["history_messages_dropped"] == 40
    assert memory["write"] == "stored"


async def test_history_is_trimmed_to_the_models_character_budget(stack: Stack) -> None:
    cid = new_cid()
    await seed(stack, cid, [f"{i}" * 1000 for i in range(10)])
    gateway, _ = await stack.start_gateway(EXAI_HISTORY_BUDGET_CHARS_BY_MODEL="kimi-=5000")
    short = await chat(gateway, {"prompt": "hi", "continuation_id": cid})
    # 4 messages of 1,000 characters and the 2-character prompt fit in 5,000.
    assert short["metadata"]["memory"]["history_messages"] == 4
    assert short["metadata"]["memory"]["history_messages_dropped"] == 6
    # Another model family: the default budget (large enough for all of it).
    other = await chat(gateway, {"prompt": "hi", "model": "glm-4.5", "continuation_id": cid})
    assert other["metadata"]["memory"]["history_messages"] == 12
    assert other["metadata"]["memory"]["history_messages_dropped"] == 0
    assert other["metadata"]["usage"]["prompt_tokens"] > short["metadata"]["usage"]["prompt_tokens"]


# --- point 3: continuation IDs and 4xx ----------------------------------------------


@pytest.mark.parametrize("cid", ["ab", "v1.2", "p:1", "..", "a/b", "x" * 129])
async def test_continuation_ids_storage_would_refuse_are_validation_errors(
    stack: Stack, cid: str
) -> None:
    async with relay(stack.storage_url) as storage:
        gateway, _ = await stack.start_gateway(EXAI_STORAGE_URL=storage.url)
        result = await chat(gateway, {"prompt": "hi", "continuation_id": cid})
    assert result["op"] == "error"
    assert result["error"]["code"] == "VALIDATION_ERROR"
    assert "continuation_id" in result["error"]["message"]
    assert storage.sent == b""


# --- point 5: a hanging or slow storage ---------------------------------------------


async def test_a_hanging_storage_does_not_hold_the_answer(stack: Stack) -> None:
    async with hanging_server() as hanging:
        gateway, _ = await stack.start_gateway(EXAI_STORAGE_URL=hanging.url)
        started = time.monotonic()
        result = await chat(gateway, {"prompt": "hello", "continuation_id": new_cid()})
        elapsed = time.monotonic() - started
        assert result["op"] == "call_tool_res", result
        assert result["outputs"][0]["text"]
        # Default budgets: 2 s to read history, 1 s for the write before answering
        # (unbounded, the storage timeouts and retries made it ~15 s).
        assert elapsed < 6 * TIME_SCALE, elapsed
        memory = result["metadata"]["memory"]
        assert memory["read"] == "unavailable"
        assert memory["history_messages"] == 0
        assert memory["write"] in ("pending", "failed")
        await gateway.stop(grace_s=0.5)


async def test_a_dead_storage_is_not_waited_on_once_the_breaker_opens(stack: Stack) -> None:
    async with hanging_server() as hanging:
        gateway, _ = await stack.start_gateway(
            EXAI_STORAGE_URL=hanging.url,
            EXAI_STORAGE_TIMEOUT_S=0.2,
            EXAI_STORAGE_BREAKER_FAILURES=2,
            EXAI_STORAGE_BREAKER_RESET_S=60,
        )
        await chat(gateway, {"prompt": "one", "continuation_id": new_cid()})

        async def breaker_open() -> bool:
            status = await gateway.status("s")
            return bool(status["memory"]["storage_circuit"] == "open")

        await eventually(breaker_open, timeout_s=10)
        seen = hanging.connections
        started = time.monotonic()
        result = await chat(gateway, {"prompt": "two", "continuation_id": new_cid()}, "r2")
        assert time.monotonic() - started < 2 * TIME_SCALE
        assert result["metadata"]["memory"]["read"] == "unavailable"
        assert result["metadata"]["memory"]["write"] == "failed"
        assert hanging.connections == seen  # not even tried


async def test_a_slow_write_is_finished_after_the_answer_exactly_once(stack: Stack) -> None:
    cid = new_cid()
    async with relay(stack.storage_url) as storage:
        gateway, _ = await stack.start_gateway(
            EXAI_STORAGE_URL=storage.url, EXAI_MEMORY_WRITE_WAIT_S=0.05
        )
        storage.delay_s = 0.4
        first = await chat(gateway, {"prompt": "My name is Ada.", "continuation_id": cid})
        assert first["metadata"]["memory"]["write"] == "pending"
        # The next call on the conversation reads after that write: it sees it.
        storage.delay_s = 0.0
        second = await chat(gateway, {"prompt": "Who am I?", "continuation_id": cid}, "r2")
        assert second["metadata"]["memory"]["read"] == "loaded"
        assert second["metadata"]["memory"]["history_messages"] == 2
        await gateway.stop(grace_s=10)  # the second write may still be going on
    history = await stack.history(cid)
    assert [(m["role"], m["content"]) for m in history][:3] == [
        ("user", "My name is Ada."),
        ("assistant", first["outputs"][0]["text"]),
        ("user", "Who am I?"),
    ]
    assert len(history) == 4


async def test_shutdown_waits_for_pending_writes(stack: Stack) -> None:
    cid = new_cid()
    async with relay(stack.storage_url) as storage:
        gateway, _ = await stack.start_gateway(
            EXAI_STORAGE_URL=storage.url, EXAI_MEMORY_WRITE_WAIT_S=0.05
        )
        await seed(stack, cid, [])
        storage.delay_s = 0.3
        result = await chat(gateway, {"prompt": "remember me", "continuation_id": cid})
        assert result["metadata"]["memory"]["write"] == "pending"
        await gateway.stop(grace_s=10)
    assert [m["content"] for m in await stack.history(cid)] == [
        "remember me",
        result["outputs"][0]["text"],
    ]


async def test_a_write_whose_answer_was_lost_is_retried_and_stored_once(stack: Stack) -> None:
    cid = new_cid()
    await seed(stack, cid, [])
    async with relay(stack.storage_url) as storage:
        gateway, _ = await stack.start_gateway(EXAI_STORAGE_URL=storage.url)
        # The user message is stored, but its response is lost: the client retries it
        # with the same idempotency key.
        storage.lose_responses_to = f"POST /v1/conversations/{cid}/messages"
        storage.lose_responses = 1
        result = await chat(gateway, {"prompt": "once only", "continuation_id": cid})
    assert result["metadata"]["memory"]["write"] == "stored"
    assert storage.count(f"POST /v1/conversations/{cid}/messages") == 3
    history = await stack.history(cid)
    assert [m["content"] for m in history] == ["once only", result["outputs"][0]["text"]]


# --- point 12: who is asking --------------------------------------------------------


async def test_every_storage_request_names_the_client(stack: Stack) -> None:
    async with relay(stack.storage_url) as storage:
        gateway, _ = await stack.start_gateway(EXAI_STORAGE_URL=storage.url)
        result = await chat(gateway, {"prompt": "hello", "continuation_id": new_cid()})
    assert result["metadata"]["memory"]["write"] == "stored"
    text = storage.text().lower()
    requests = text.count(" http/1.1\r\n")
    assert requests == 4  # read (404), create, two appends
    assert text.count("\r\nx-exai-client-id: default\r\n") == requests
