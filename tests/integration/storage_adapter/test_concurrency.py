"""Concurrent duplicates: unique constraints + ON CONFLICT DO NOTHING, never two rows."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.storage_adapter.conftest import (
    SqlBackend,
    make_settings,
    message_body,
    running_adapter,
)
from tests.support.telemetry import CapturedTelemetry

pytestmark = pytest.mark.integration

PARALLEL = 20


async def test_concurrent_retries_store_one_message(
    captured: CapturedTelemetry, sql_backend: SqlBackend
) -> None:
    async with running_adapter(captured, make_settings(**sql_backend.settings)) as adapter:
        body = message_body("exactly once", "same-key")
        responses = await asyncio.gather(
            *(
                adapter.client.post("/v1/conversations/race-conv/messages", json=body)
                for _ in range(PARALLEL)
            )
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * (PARALLEL - 1) + [201]
        assert len({r.json()["id"] for r in responses}) == 1
        history = (await adapter.client.get("/v1/conversations/race-conv")).json()
        assert [m["content"] for m in history["messages"]] == ["exactly once"]

    assert (
        await sql_backend.scalar(
            "SELECT count(*) FROM messages WHERE idempotency_key = $1", "same-key"
        )
        == 1
    )
    assert await sql_backend.scalar("SELECT count(*) FROM conversations") == 1


async def test_concurrent_creates_make_one_conversation(
    captured: CapturedTelemetry, sql_backend: SqlBackend
) -> None:
    async with running_adapter(captured, make_settings(**sql_backend.settings)) as adapter:
        responses = await asyncio.gather(
            *(
                adapter.client.post("/v1/conversations", json={"continuation_id": "one-conv"})
                for _ in range(PARALLEL)
            )
        )
        assert sorted(r.status_code for r in responses) == [200] * (PARALLEL - 1) + [201]
        assert len({r.json()["id"] for r in responses}) == 1
    assert await sql_backend.scalar("SELECT count(*) FROM conversations") == 1


async def test_concurrent_appends_keep_every_message_in_id_order(
    captured: CapturedTelemetry, sql_backend: SqlBackend, redis_url: str
) -> None:
    settings = make_settings(**sql_backend.settings, REDIS_URL=redis_url)
    async with running_adapter(captured, settings) as adapter:
        client = adapter.client
        await client.post("/v1/conversations/busy/messages", json=message_body("seed"))
        await client.get("/v1/conversations/busy")  # cache entry exists during the race
        responses = await asyncio.gather(
            *(
                client.post("/v1/conversations/busy/messages", json=message_body(f"m{i}"))
                for i in range(PARALLEL)
            )
        )
        assert all(r.status_code == 201 for r in responses)
        cached = (await client.get("/v1/conversations/busy")).json()
        assert adapter.counter("exai.storage.cache.lookups", **{"exai.cache.result": "hit"}) == 1

    ids = [m["id"] for m in cached["messages"]]
    assert ids == sorted(ids)
    assert sorted(m["content"] for m in cached["messages"]) == sorted(
        ["seed", *(f"m{i}" for i in range(PARALLEL))]
    )
    # A cold read from the durable store agrees with what the cache served.
    async with running_adapter(captured, make_settings(**sql_backend.settings)) as cold:
        durable = (await cold.client.get("/v1/conversations/busy")).json()
    assert durable["messages"] == cached["messages"]
