"""Reads: cache first, durable store on a miss, and never a stale read after a write."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.integration.storage_adapter.conftest import (
    Adapter,
    make_settings,
    message_body,
    redis_dump,
    running_adapter,
)
from tests.support.telemetry import CapturedTelemetry

pytestmark = pytest.mark.integration

LOOKUPS = "exai.storage.cache.lookups"


def lookups(adapter: Adapter, result: str) -> int:
    return adapter.counter(LOOKUPS, **{"exai.cache.result": result})


async def test_hits_misses_and_turn_cap(
    captured: CapturedTelemetry, tmp_path: Path, cache_settings: dict[str, str]
) -> None:
    settings = make_settings(
        EXAI_SQLITE_PATH=f"{tmp_path}/exai.db", EXAI_CACHE_MAX_TURNS=3, **cache_settings
    )
    async with running_adapter(captured, settings) as adapter:
        client = adapter.client
        for i in range(5):
            await client.post("/v1/conversations/capped/messages", json=message_body(f"m{i}"))

        first = (await client.get("/v1/conversations/capped", params={"limit": 2})).json()
        assert (lookups(adapter, "miss"), lookups(adapter, "hit")) == (1, 0)
        second = (await client.get("/v1/conversations/capped", params={"limit": 3})).json()
        assert (lookups(adapter, "miss"), lookups(adapter, "hit")) == (1, 1)
        assert [m["content"] for m in first["messages"]] == ["m3", "m4"]
        assert [m["content"] for m in second["messages"]] == ["m2", "m3", "m4"]
        assert second["has_more"] is True

        # More turns than the cache keeps: the durable store answers.
        wide = (await client.get("/v1/conversations/capped", params={"limit": 5})).json()
        assert [m["content"] for m in wide["messages"]] == [f"m{i}" for i in range(5)]
        assert wide["has_more"] is False
        assert lookups(adapter, "miss") == 2

        # A write updates the entry: the next read is a hit and includes it.
        await client.post("/v1/conversations/capped/messages", json=message_body("m5"))
        after = (await client.get("/v1/conversations/capped", params={"limit": 3})).json()
        assert [m["content"] for m in after["messages"]] == ["m3", "m4", "m5"]
        assert after["updated_at"] == max(m["created_at"] for m in after["messages"])
        assert lookups(adapter, "hit") == 2
        assert lookups(adapter, "error") == 0


async def test_small_conversation_is_served_whole_from_the_cache(
    captured: CapturedTelemetry, tmp_path: Path, redis_url: str
) -> None:
    settings = make_settings(EXAI_SQLITE_PATH=f"{tmp_path}/exai.db", REDIS_URL=redis_url)
    async with running_adapter(captured, settings) as adapter:
        client = adapter.client
        await client.post("/v1/conversations", json={"continuation_id": "small"})
        empty = (await client.get("/v1/conversations/small")).json()
        assert empty["messages"] == [] and empty["has_more"] is False
        await client.post("/v1/conversations/small/messages", json=message_body("only"))
        history = (await client.get("/v1/conversations/small", params={"limit": 100})).json()
        assert [m["content"] for m in history["messages"]] == ["only"]
        assert history["has_more"] is False
        # An entry that holds the whole conversation serves any limit.
        assert (lookups(adapter, "miss"), lookups(adapter, "hit")) == (1, 1)


async def test_entries_expire_after_the_ttl(
    captured: CapturedTelemetry, tmp_path: Path, redis_url: str
) -> None:
    settings = make_settings(
        EXAI_SQLITE_PATH=f"{tmp_path}/exai.db", REDIS_URL=redis_url, EXAI_CACHE_TTL_S=1
    )
    async with running_adapter(captured, settings) as adapter:
        await adapter.client.post("/v1/conversations/ttl-conv/messages", json=message_body("x"))
        await adapter.client.get("/v1/conversations/ttl-conv")
        assert "conv:ttl-conv" in await redis_dump(redis_url)
        deadline = asyncio.get_running_loop().time() + 5
        while "conv:ttl-conv" in await redis_dump(redis_url):
            assert asyncio.get_running_loop().time() < deadline, "entry outlived its TTL"
            await asyncio.sleep(0.1)
        await adapter.client.get("/v1/conversations/ttl-conv")
        assert lookups(adapter, "miss") == 2


async def test_a_second_adapter_sees_the_first_ones_writes(
    captured: CapturedTelemetry, tmp_path: Path, redis_url: str
) -> None:
    """Two replicas sharing Redis and a database: a write through one is read by the other."""
    settings = make_settings(EXAI_SQLITE_PATH=f"{tmp_path}/exai.db", REDIS_URL=redis_url)
    async with running_adapter(captured, settings) as one:
        await one.client.post("/v1/conversations/shared/messages", json=message_body("a"))
        await one.client.get("/v1/conversations/shared")
    async with running_adapter(captured, settings) as two:
        await two.client.post("/v1/conversations/shared/messages", json=message_body("b"))
        history = (await two.client.get("/v1/conversations/shared")).json()
        assert [m["content"] for m in history["messages"]] == ["a", "b"]
        assert lookups(two, "hit") == 1
