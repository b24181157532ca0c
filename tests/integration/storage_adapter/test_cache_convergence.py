"""The cache converges on the durable store whatever happens between the two writes.

A message is committed, then the cache is updated. Each way the second step can go
missing is reproduced here against the real stores: the request is cancelled right
after the commit, the replica dies there (a crash), the commit's outcome is in doubt
(the connection broke during COMMIT), and a retry with the same idempotency key finds
the message stored already. Afterwards every read returns every message.

The stores are the real ones; the only addition is a pause (or an error) right after
the real commit, so that the moment between the two writes can be reached on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from storage_adapter.cache import ConversationCache
from storage_adapter.cache import redis as redis_cache
from storage_adapter.cache.guard import CacheGuard
from storage_adapter.cache.memory import MemoryCache
from storage_adapter.errors import StoreUnavailable
from storage_adapter.models import AppendResult, NewMessage, utc_now
from storage_adapter.service import ConversationService
from storage_adapter.settings import async_database_url
from storage_adapter.store.sql import SqlStore, create_engine
from storage_adapter.telemetry import Dependencies, StorageMetrics
from tests.integration.storage_adapter.conftest import (
    TIME_SCALE,
    SqlBackend,
    create_database,
    make_settings,
    message_body,
    running_adapter,
)
from tests.support.servers import PostgresServer
from tests.support.telemetry import CapturedTelemetry

pytestmark = pytest.mark.integration

OWNER = "default"
LEASE_S = 0.5 * TIME_SCALE


class InterruptibleStore(SqlStore):
    """The real SQL store; after a real commit it can hold still until released
    (`pause`), or report the commit as failed (`in_doubt`)."""

    pause = False
    in_doubt = False

    def __init__(self, url: str) -> None:
        super().__init__(create_engine(url, timeout_s=5, pool_size=4))
        self.committed = asyncio.Event()
        self.release = asyncio.Event()

    async def append_message(
        self, continuation_id: str, client_id: str, message: NewMessage, now: datetime
    ) -> AppendResult:
        result = await super().append_message(continuation_id, client_id, message, now)
        if self.pause:
            self.committed.set()
            await self.release.wait()
        if self.in_doubt:
            # What SqlStore raises when the connection breaks during COMMIT (see
            # test_a_failure_while_committing_is_in_doubt).
            raise StoreUnavailable("append_message", "lost during COMMIT", in_doubt=True)
        return result


@dataclass
class Replica:
    service: ConversationService
    store: InterruptibleStore
    cache: ConversationCache

    async def contents(self, continuation_id: str) -> list[str]:
        _, messages, _ = await self.service.get_history(continuation_id, OWNER, 50)
        return [m.content for m in messages]

    async def append(self, continuation_id: str, content: str, key: str | None = None) -> None:
        message = NewMessage("user", content, key or f"key-{content}")
        await self.service.append_message(continuation_id, OWNER, message)


def build_cache(kind: str, redis_url: str) -> ConversationCache:
    if kind == "memory":
        return MemoryCache(
            ttl_s=600,
            max_turns=10,
            max_conversations=100,
            max_chars=10**6,
            write_lease_s=LEASE_S,
        )
    client = redis_cache.connect(redis_url, timeout_s=2 * TIME_SCALE)
    return redis_cache.RedisCache(client, ttl_s=600, max_turns=10, write_lease_s=LEASE_S)


@contextlib.asynccontextmanager
async def replica(backend: SqlBackend, cache: ConversationCache) -> AsyncIterator[Replica]:
    url = make_settings(**backend.settings).sqlalchemy_url()
    store = InterruptibleStore(url)
    dependencies = Dependencies()
    reader = InMemoryMetricReader()
    metrics = StorageMetrics(MeterProvider(metric_readers=[reader]).get_meter("t"), dependencies)
    guard = CacheGuard(cache, metrics, dependencies, retry_s=0.1)
    service = ConversationService(store, guard, metrics, dependencies, cache_max_turns=10)
    await service.start()
    try:
        yield Replica(service, store, cache)
    finally:
        await service.close()


async def eventually_all(r: Replica, continuation_id: str, expected: list[str]) -> None:
    """Reads return every message, at the latest once a write lease has run out."""
    deadline = asyncio.get_running_loop().time() + LEASE_S + 3 * TIME_SCALE
    while (seen := await r.contents(continuation_id)) != expected:
        assert asyncio.get_running_loop().time() < deadline, seen
        await asyncio.sleep(0.05)
    for _ in range(3):  # and keep doing so (from the refilled cache)
        assert await r.contents(continuation_id) == expected


@pytest.fixture(params=["memory", "redis"])
def cache_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_cancelled_right_after_the_commit(
    sql_backend: SqlBackend, redis_url: str, cache_kind: str
) -> None:
    async with replica(sql_backend, build_cache(cache_kind, redis_url)) as r:
        await r.append("cancel", "m0")
        assert await r.contents("cancel") == ["m0"]  # the cache holds an entry

        r.store.pause = True
        call = asyncio.create_task(r.append("cancel", "m1"))
        await asyncio.wait_for(r.store.committed.wait(), 10)
        call.cancel()  # the client went away; m1 is committed already
        with pytest.raises(asyncio.CancelledError):
            await call
        r.store.pause = False
        r.store.release.set()
        await asyncio.sleep(0.05)

        # Immediately: the write went on to update the cache, no lease to wait out.
        assert await r.contents("cancel") == ["m0", "m1"]
        await r.append("cancel", "m2")
        await eventually_all(r, "cancel", ["m0", "m1", "m2"])


async def test_replica_dies_between_commit_and_cache_update(
    sql_backend: SqlBackend, redis_url: str, cache_kind: str
) -> None:
    """The replica began the write and committed, then died: no cache update, no
    retry. Its write lease runs out and the possibly stale entry is dropped."""
    cache = build_cache(cache_kind, redis_url)
    async with replica(sql_backend, cache) as r:
        await r.append("crash", "m0")
        assert await r.contents("crash") == ["m0"]

        await cache.begin_write("crash")  # what the dying replica did...
        await r.store.append_message("crash", OWNER, NewMessage("user", "m1", "k1"), utc_now())
        # ... and nothing more. A read during the lease fills the cache from a
        # snapshot that may or may not hold m1; after the lease it must.
        await r.contents("crash")
        await eventually_all(r, "crash", ["m0", "m1"])
        await r.append("crash", "m2")
        await eventually_all(r, "crash", ["m0", "m1", "m2"])


async def test_commit_in_doubt_then_read_and_retry(
    sql_backend: SqlBackend, redis_url: str, cache_kind: str
) -> None:
    async with replica(sql_backend, build_cache(cache_kind, redis_url)) as r:
        await r.append("doubt", "m0")
        assert await r.contents("doubt") == ["m0"]

        r.store.in_doubt = True
        with pytest.raises(StoreUnavailable):
            await r.append("doubt", "m1", "k-doubt")  # committed, reported as failed
        r.store.in_doubt = False

        assert await r.contents("doubt") == ["m0", "m1"]  # not the old entry
        await r.append("doubt", "m1", "k-doubt")  # the caller's retry: a replay
        await eventually_all(r, "doubt", ["m0", "m1"])


async def test_replay_after_a_lost_cache_update_refreshes_the_cache(
    captured: CapturedTelemetry, sql_backend: SqlBackend, redis_url: str
) -> None:
    """Through the HTTP API: the message went into the database by a replica whose
    cache update was lost (it died); the gateway's retry with the same idempotency
    key reaches a live replica, which finds the message stored (200) and must not
    leave the cache without it."""
    settings = make_settings(**sql_backend.settings, REDIS_URL=redis_url)
    async with running_adapter(captured, settings) as adapter:
        client = adapter.client
        await client.post("/v1/conversations/replay/messages", json=message_body("m0", "k0"))
        first = (await client.get("/v1/conversations/replay")).json()
        assert [m["content"] for m in first["messages"]] == ["m0"]

        lost = SqlStore(create_engine(settings.sqlalchemy_url(), timeout_s=5, pool_size=1))
        try:
            await lost.append_message("replay", OWNER, NewMessage("user", "m1", "k1"), utc_now())
        finally:
            await lost.close()

        retry = await client.post(
            "/v1/conversations/replay/messages", json=message_body("m1", "k1")
        )
        assert retry.status_code == 200  # stored before: a replay
        for _ in range(3):
            history = (await client.get("/v1/conversations/replay")).json()
            assert [m["content"] for m in history["messages"]] == ["m0", "m1"]
        assert (
            await sql_backend.scalar("SELECT count(*) FROM messages WHERE idempotency_key = 'k1'")
            == 1
        )


async def test_a_failure_while_committing_is_in_doubt(postgres_srv: PostgresServer) -> None:
    """A failure raised by COMMIT itself (a deferred trigger stands in for the
    connection breaking then) may follow a commit; one raised by a statement before
    it cannot, and the cache entry is kept."""
    url = await create_database(postgres_srv)
    store = SqlStore(create_engine(async_database_url(url), timeout_s=5, pool_size=2))
    try:
        await store.initialize()
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "CREATE FUNCTION fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'connection lost' USING ERRCODE = '08006'; END $$;"
                "CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON messages "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail();"
            )
            with pytest.raises(StoreUnavailable) as at_commit:
                await store.append_message("c1", OWNER, NewMessage("user", "x", "k1"), utc_now())
            assert at_commit.value.in_doubt

            await conn.execute(
                "DROP TRIGGER at_commit ON messages;"
                "CREATE TRIGGER at_insert BEFORE INSERT ON messages "
                "FOR EACH ROW EXECUTE FUNCTION fail();"
            )
            with pytest.raises(StoreUnavailable) as before_commit:
                await store.append_message("c1", OWNER, NewMessage("user", "x", "k2"), utc_now())
            assert not before_commit.value.in_doubt
        finally:
            await conn.close()
    finally:
        await store.close()


async def test_a_write_that_failed_before_committing_keeps_the_entry(
    captured: CapturedTelemetry, postgres_srv: PostgresServer, redis_url: str
) -> None:
    """Nothing can have been stored: reads the cache can answer keep working."""
    url = await create_database(postgres_srv)
    settings = make_settings(EXAI_DATABASE_URL=url, REDIS_URL=redis_url)
    async with running_adapter(captured, settings) as adapter:
        client = adapter.client
        await client.post("/v1/conversations/kept/messages", json=message_body("m0"))
        await client.get("/v1/conversations/kept")
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "CREATE FUNCTION fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'disk full' USING ERRCODE = '53100'; END $$;"
                "CREATE TRIGGER at_insert BEFORE INSERT ON messages "
                "FOR EACH ROW EXECUTE FUNCTION fail();"
            )
        finally:
            await conn.close()
        failed = await client.post("/v1/conversations/kept/messages", json=message_body("m1"))
        assert failed.status_code == 503
        lookups = "exai.storage.cache.lookups"
        hits = adapter.counter(lookups, **{"exai.cache.result": "hit"})
        served = await client.get("/v1/conversations/kept")
        assert [m["content"] for m in served.json()["messages"]] == ["m0"]
        assert adapter.counter(lookups, **{"exai.cache.result": "hit"}) == hits + 1
