"""Storage-adapter: append + read round trips with the in-process memory cache, with a
real Redis, and with SQLite alone, interleaved.

Three real adapters run side by side on loopback, each over its own SQLite file, with
telemetry on. "SQLite only" is the adapter with its cache out of the way: `REDIS_URL`
points at a closed port and `EXAI_CACHE_RETRY_S` is long, so after the first refused
connection every read goes to SQLite — the code path of a Redis outage.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from storage_adapter.app import create_app
from storage_adapter.settings import StorageSettings
from tests.bench.measure import SCALE, ms, p50, p95, report, timed
from tests.support.asgi import serve_app
from tests.support.internal_auth import STORAGE_TOKEN, bearer
from tests.support.servers import RedisServer, free_port
from tests.support.telemetry import CapturedTelemetry, metric_points

pytestmark = pytest.mark.bench

CONVERSATIONS = 8
PREFILL = 20  # messages per conversation before measuring
WARMUP_ROUNDS = 30
ROUNDS = 300
CONTENT = "A message of a realistic length for a chat turn. " * 4
# Targets (see docs/benchmarks.md): read medians as a fraction of SQLite-only reads
# (measured ~0.5 memory, ~0.75 Redis); below 1 so that a cache serving no hits fails.
MAX_MEMORY_READ_RATIO = 0.85
MAX_REDIS_READ_RATIO = 1.3
MIN_HIT_RATIO = 0.99
# Appends go to SQLite first in every variant; the cache write on top stays small.
MAX_CACHED_APPEND_RATIO = 1.5


@dataclass
class Adapter:
    name: str
    client: httpx.AsyncClient
    reader: InMemoryMetricReader
    appends: list[float] = field(default_factory=list)
    reads: list[float] = field(default_factory=list)

    def lookups(self, result: str) -> int:
        return sum(
            int(point.value)
            for attrs, point in metric_points(self.reader, "exai.storage.cache.lookups")
            if attrs.get("exai.cache.result") == result
        )

    async def append(self, continuation_id: str) -> None:
        body = {"role": "user", "content": CONTENT, "idempotency_key": uuid.uuid4().hex}
        response = await self.client.post(
            f"/v1/conversations/{continuation_id}/messages", json=body
        )
        assert response.status_code == 201, response.text

    async def read(self, continuation_id: str) -> None:
        response = await self.client.get(f"/v1/conversations/{continuation_id}")
        assert response.status_code == 200, response.text
        assert response.json()["messages"]


@contextlib.asynccontextmanager
async def running_adapter(
    name: str, captured: CapturedTelemetry, values: dict[str, Any]
) -> AsyncIterator[Adapter]:
    base: dict[str, Any] = {
        "EXAI_DATABASE_URL": None,
        "SUPABASE_URL": None,
        "SUPABASE_KEY": None,
        "REDIS_URL": None,
        "EXAI_STORAGE_TOKEN": STORAGE_TOKEN,
    }
    # model_validate: from these values only, never the environment or a .env file.
    settings = StorageSettings.model_validate({**base, **values})
    telemetry, reader = captured.build("storage-adapter", settings)
    async with (
        serve_app(create_app(settings, telemetry)) as url,
        httpx.AsyncClient(base_url=url, headers=bearer(STORAGE_TOKEN), timeout=10) as client,
    ):
        yield Adapter(name, client, reader)


async def test_storage_round_trips_memory_vs_redis_vs_sqlite(
    captured: CapturedTelemetry, tmp_path: Path, redis_srv: RedisServer
) -> None:
    if redis_srv.process.poll() is not None:
        redis_srv.start_again()
    flush = aioredis.Redis.from_url(redis_srv.url)
    try:
        await flush.flushdb()
    finally:
        await flush.aclose()
    configs: dict[str, dict[str, Any]] = {
        "memory": {},
        "redis": {"REDIS_URL": redis_srv.url},
        "sqlite": {
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
            "EXAI_CACHE_RETRY_S": 300,
        },
    }
    async with contextlib.AsyncExitStack() as exit_stack:
        adapters = [
            await exit_stack.enter_async_context(
                running_adapter(
                    name, captured, {"EXAI_SQLITE_PATH": str(tmp_path / f"{name}.db"), **values}
                )
            )
            for name, values in configs.items()
        ]
        conversations = [f"bench-{i}" for i in range(CONVERSATIONS)]
        for adapter in adapters:
            for cid in conversations:
                for _ in range(PREFILL):
                    await adapter.append(cid)
        captured.exporter.clear()
        hits_before: dict[str, int] = {}
        for round_index in range(WARMUP_ROUNDS + ROUNDS):
            if round_index == WARMUP_ROUNDS:
                hits_before = {a.name: a.lookups("hit") for a in adapters}
            cid = conversations[round_index % CONVERSATIONS]
            shift = round_index % len(adapters)
            order = adapters[shift:] + adapters[:shift]
            if round_index % 2:
                order.reverse()
            for adapter in order:
                append = await timed(partial(adapter.append, cid))
                read = await timed(partial(adapter.read, cid))
                if round_index >= WARMUP_ROUNDS:
                    adapter.appends.append(append)
                    adapter.reads.append(read)
            if round_index % 50 == 0:
                captured.exporter.clear()
        hit_ratios = {a.name: (a.lookups("hit") - hits_before[a.name]) / ROUNDS for a in adapters}
        captured.exporter.clear()

    by_name = {a.name: a for a in adapters}
    sqlite_read = p50(by_name["sqlite"].reads)
    sqlite_trip = p50(
        [x + y for x, y in zip(by_name["sqlite"].appends, by_name["sqlite"].reads, strict=True)]
    )
    sqlite_append = p50(by_name["sqlite"].appends)
    ratios: dict[str, float] = {}
    append_ratios: dict[str, float] = {}
    for adapter in adapters:
        trips = [x + y for x, y in zip(adapter.appends, adapter.reads, strict=True)]
        ratios[adapter.name] = p50(adapter.reads) / sqlite_read
        append_ratios[adapter.name] = p50(adapter.appends) / sqlite_append
        report(
            f"storage-{adapter.name}",
            rounds=ROUNDS,
            append_p50=ms(p50(adapter.appends)),
            append_p95=ms(p95(adapter.appends)),
            read_p50=ms(p50(adapter.reads)),
            read_p95=ms(p95(adapter.reads)),
            round_trip_p50=ms(p50(trips)),
            append_vs_sqlite=f"{append_ratios[adapter.name]:.2f}x",
            read_vs_sqlite=f"{ratios[adapter.name]:.2f}x",
            round_trip_vs_sqlite=f"{p50(trips) / sqlite_trip:.2f}x",
            cache_hits=f"{hit_ratios[adapter.name]:.0%}",
        )
    memory_target = MAX_MEMORY_READ_RATIO * SCALE
    redis_target = MAX_REDIS_READ_RATIO * SCALE
    report(
        "storage-targets",
        memory_read_vs_sqlite=f"{ratios['memory']:.2f}x (target <= {memory_target:.2f}x)",
        redis_read_vs_sqlite=f"{ratios['redis']:.2f}x (target <= {redis_target:.2f}x)",
        append_vs_sqlite=(
            f"memory {append_ratios['memory']:.2f}x, redis {append_ratios['redis']:.2f}x"
            f" (target <= {MAX_CACHED_APPEND_RATIO * SCALE:.2f}x)"
        ),
        cache_hits=(
            f"memory {hit_ratios['memory']:.0%}, redis {hit_ratios['redis']:.0%}"
            f" (target >= {MIN_HIT_RATIO:.0%})"
        ),
    )
    assert hit_ratios["memory"] >= MIN_HIT_RATIO
    assert hit_ratios["redis"] >= MIN_HIT_RATIO
    assert hit_ratios["sqlite"] == 0
    assert ratios["memory"] <= memory_target
    assert ratios["redis"] <= redis_target
    assert append_ratios["memory"] <= MAX_CACHED_APPEND_RATIO * SCALE
    assert append_ratios["redis"] <= MAX_CACHED_APPEND_RATIO * SCALE
