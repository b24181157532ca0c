"""Dependencies failing and coming back: Redis (optional) and the durable store (required)."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from tests.integration.storage_adapter.conftest import (
    TIME_SCALE,
    Adapter,
    create_database,
    make_settings,
    message_body,
    redis_dump,
    redis_stopped,
    running_adapter,
)
from tests.support.servers import PostgresServer, RedisServer, free_port
from tests.support.telemetry import CapturedTelemetry

pytestmark = pytest.mark.integration

GUARD_LOGGER = "storage_adapter.cache.guard"


async def wait_for_health(client: httpx.AsyncClient, status: str) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + 10 * TIME_SCALE
    while True:
        document: dict[str, Any] = (await client.get("/health")).json()
        if document["status"] == status:
            return document
        assert asyncio.get_running_loop().time() < deadline, document
        await asyncio.sleep(0.1)


def contents(document: dict[str, Any]) -> list[str]:
    return [m["content"] for m in document["messages"]]


def errors(adapter: Adapter) -> int:
    return adapter.counter("exai.storage.cache.lookups", **{"exai.cache.result": "error"})


async def test_redis_down_degrades_then_recovers(
    captured: CapturedTelemetry,
    tmp_path: Path,
    redis_url: str,
    redis_srv: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(EXAI_SQLITE_PATH=f"{tmp_path}/exai.db", REDIS_URL=redis_url)
    caplog.set_level(logging.INFO, logger=GUARD_LOGGER)
    async with running_adapter(captured, settings) as adapter:
        client = adapter.client
        for text in ("m0", "m1"):
            await client.post("/v1/conversations/outage/messages", json=message_body(text))
        await client.get("/v1/conversations/outage")
        assert adapter.gauge("exai.storage.dependency.up", **{"exai.dependency": "cache"}) == 1

        with redis_stopped(redis_srv):
            served = await client.get("/v1/conversations/outage")
            assert served.status_code == 200
            assert contents(served.json()) == ["m0", "m1"]
            stored = await client.post("/v1/conversations/outage/messages", json=message_body("m2"))
            assert stored.status_code == 201
            for _ in range(5):
                again = await client.get("/v1/conversations/outage")
                assert contents(again.json()) == ["m0", "m1", "m2"]

            health = (await client.get("/health")).json()
            assert health["status"] == "degraded"
            assert health["components"]["redis"]["status"] == "down"
            assert health["components"]["redis"]["required"] is False
            assert "redis" in health["components"]["redis"]["error"]
            assert health["components"]["sqlite"]["status"] == "up"
            assert (await client.get("/health/ready")).status_code == 200
            assert errors(adapter) >= 6
            assert adapter.gauge("exai.storage.dependency.up", **{"exai.dependency": "cache"}) == 0
            warnings = [
                r for r in caplog.records if r.name == GUARD_LOGGER and r.levelname == "WARNING"
            ]
            assert len(warnings) == 1, "one warning per outage, not one per request"

        await wait_for_health(client, "healthy")
        errors_before = errors(adapter)
        recovered = await client.get("/v1/conversations/outage")
        assert contents(recovered.json()) == ["m0", "m1", "m2"]
        await client.get("/v1/conversations/outage")
        assert errors(adapter) == errors_before
        assert adapter.counter("exai.storage.cache.lookups", **{"exai.cache.result": "hit"}) >= 1
        assert adapter.gauge("exai.storage.dependency.up", **{"exai.dependency": "cache"}) == 1
        assert any("available again" in r.getMessage() for r in caplog.records)


async def test_write_missed_by_a_stalled_redis_is_never_read_stale(
    captured: CapturedTelemetry, tmp_path: Path, redis_url: str
) -> None:
    """Redis keeps its data but stops answering (CLIENT PAUSE), so the cache update
    of a durable write is lost; once Redis answers again, that old entry must not be
    served."""
    settings = make_settings(EXAI_SQLITE_PATH=f"{tmp_path}/exai.db", REDIS_URL=redis_url)
    pause_ms = int(2500 * TIME_SCALE)
    async with running_adapter(captured, settings) as adapter:
        client = adapter.client
        await client.post("/v1/conversations/stall/messages", json=message_body("before"))
        assert contents((await client.get("/v1/conversations/stall")).json()) == ["before"]

        admin = aioredis.Redis.from_url(redis_url)
        try:
            await admin.execute_command("CLIENT", "PAUSE", pause_ms, "ALL")
        finally:
            await admin.aclose()
        started = asyncio.get_running_loop().time()
        stored = await client.post("/v1/conversations/stall/messages", json=message_body("during"))
        assert stored.status_code == 201
        assert asyncio.get_running_loop().time() - started < pause_ms / 1000, "write waited"

        await asyncio.sleep(pause_ms / 1000 + settings.cache_retry_s)
        await wait_for_health(client, "healthy")
        after = (await client.get("/v1/conversations/stall")).json()
        assert contents(after) == ["before", "during"]
        assert "exai:storage:v1:epoch" in await redis_dump(redis_url)


async def block_database(server: PostgresServer, url: str, allow: bool) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(server.dsn)
    try:
        await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}')
        if not allow:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
    finally:
        await conn.close()


async def test_durable_down_is_503_and_writes_nothing(
    captured: CapturedTelemetry, postgres_srv: PostgresServer, redis_url: str
) -> None:
    database = await create_database(postgres_srv)
    settings = make_settings(EXAI_DATABASE_URL=database, REDIS_URL=redis_url)
    secret = f"never-durable-{uuid.uuid4().hex}"
    async with running_adapter(captured, settings) as adapter:
        client = adapter.client
        await client.post("/v1/conversations/dur/messages", json=message_body("kept", "k0"))
        assert contents((await client.get("/v1/conversations/dur")).json()) == ["kept"]
        assert adapter.gauge("exai.storage.dependency.up", **{"exai.dependency": "durable"}) == 1

        await block_database(postgres_srv, database, allow=False)
        try:
            failed = await client.post(
                "/v1/conversations/dur/messages", json=message_body(secret, "k1")
            )
            assert failed.status_code == 503
            assert failed.json()["error"]["code"] == "STORAGE_UNAVAILABLE"
            assert "postgresql" in failed.json()["error"]["message"]
            assert failed.headers["retry-after"] == "1"
            assert secret not in await redis_dump(redis_url)

            created = await client.post("/v1/conversations", json={"continuation_id": "new-one"})
            assert created.status_code == 503
            # Reads the cache can answer still work; the others fail clearly.
            cached = await client.get("/v1/conversations/dur")
            assert cached.status_code == 200 and contents(cached.json()) == ["kept"]
            assert (await client.get("/v1/conversations/uncached")).status_code == 503

            assert (await client.get("/health/ready")).status_code == 503
            health = (await client.get("/health")).json()
            assert health["status"] == "unhealthy"
            assert health["components"]["postgresql"]["status"] == "down"
            assert (
                adapter.counter(
                    "exai.storage.durable.errors", **{"exai.operation": "append_message"}
                )
                == 1
            )
            assert (
                adapter.gauge("exai.storage.dependency.up", **{"exai.dependency": "durable"}) == 0
            )
        finally:
            await block_database(postgres_srv, database, allow=True)

        assert (await client.get("/health/ready")).status_code == 200
        retried = await client.post(
            "/v1/conversations/dur/messages", json=message_body(secret, "k1")
        )
        assert retried.status_code == 201  # nothing was half-written before
        assert contents((await client.get("/v1/conversations/dur")).json()) == ["kept", secret]
        assert adapter.gauge("exai.storage.dependency.up", **{"exai.dependency": "durable"}) == 1


async def test_starts_unready_while_the_database_is_unreachable(
    captured: CapturedTelemetry, redis_url: str
) -> None:
    closed = f"postgresql://exai@127.0.0.1:{free_port()}/exai"
    settings = make_settings(EXAI_DATABASE_URL=closed, REDIS_URL=redis_url, EXAI_DB_TIMEOUT_S=1)
    async with running_adapter(captured, settings) as adapter:
        client = adapter.client
        assert (await client.get("/health/live")).status_code == 200
        ready = await client.get("/health/ready")
        assert ready.status_code == 503
        component = ready.json()["components"]["postgresql"]
        assert component["status"] == "down" and "ConnectionRefusedError" in component["error"]
        failed = await client.post("/v1/conversations/nodb/messages", json=message_body("lost"))
        assert failed.status_code == 503
        assert failed.json()["error"]["code"] == "STORAGE_UNAVAILABLE"
        assert "lost" not in await redis_dump(redis_url)
        assert (
            adapter.counter("exai.storage.durable.errors", **{"exai.operation": "initialize"}) >= 1
        )


async def test_supabase_backend_is_unready_when_unreachable(
    captured: CapturedTelemetry, redis_url: str
) -> None:
    """What can be checked here without a Supabase: start-up, readiness and the 503.
    (Requests against a live Supabase are not tested: no network in this repository's
    tests, and no fake Supabase server on purpose.)"""
    key = "sb-secret-key-" + uuid.uuid4().hex
    settings = make_settings(
        SUPABASE_URL=f"http://127.0.0.1:{free_port()}",
        SUPABASE_KEY=key,
        REDIS_URL=redis_url,
        EXAI_DB_TIMEOUT_S=1,
    )
    async with running_adapter(captured, settings) as adapter:
        ready = await adapter.client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["components"]["supabase"]["status"] == "down"
        failed = await adapter.client.post("/v1/conversations", json={})
        assert failed.status_code == 503
        assert "supabase" in failed.json()["error"]["message"]
    for span in captured.spans():
        assert key not in str(span.to_json())


async def test_a_hanging_database_costs_one_timeout_per_burst(
    captured: CapturedTelemetry,
) -> None:
    """A database that accepts connections and never answers: requests arriving
    together share one start-up attempt instead of queueing a timeout each."""
    timeout_s = 1.0 * TIME_SCALE
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(32)
        port = silent.getsockname()[1]
        settings = make_settings(
            EXAI_DATABASE_URL=f"postgresql://exai@127.0.0.1:{port}/exai",
            EXAI_DB_TIMEOUT_S=timeout_s,
        )
        async with running_adapter(captured, settings) as adapter:
            loop = asyncio.get_running_loop()
            started = loop.time()
            responses = await asyncio.gather(
                *(
                    adapter.client.post(
                        f"/v1/conversations/hang-{i}/messages", json=message_body("x")
                    )
                    for i in range(5)
                )
            )
            elapsed = loop.time() - started
    assert [r.status_code for r in responses] == [503] * 5
    assert elapsed < 2.5 * timeout_s, f"{elapsed:.1f}s for 5 requests"
