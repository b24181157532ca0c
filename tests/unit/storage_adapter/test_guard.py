"""CacheGuard: a failing cache is counted, logged sparingly, skipped, then retried."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from storage_adapter.cache import CacheLookup
from storage_adapter.cache.guard import CacheGuard
from storage_adapter.cache.memory import MemoryCache
from storage_adapter.errors import CacheUnavailable
from storage_adapter.models import Conversation, History, Message
from storage_adapter.telemetry import Dependencies, StorageMetrics
from tests.support.telemetry import metric_points
from tests.unit.storage_adapter.helpers import conversation, history, message


class SwitchableCache(MemoryCache):
    """A real memory cache with an off switch, counting the calls that reach it."""

    def __init__(self) -> None:
        super().__init__(ttl_s=60, max_turns=10, max_conversations=10, max_chars=10**6)
        self.down = False
        self.calls = 0
        self.invalidations = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise CacheUnavailable("switched off")

    async def lookup(self, continuation_id: str) -> CacheLookup:
        self._check()
        return await super().lookup(continuation_id)

    async def fill(self, continuation_id: str, history: History, token: object) -> bool:
        self._check()
        return await super().fill(continuation_id, history, token)

    async def begin_write(self, continuation_id: str) -> object:
        self._check()
        return await super().begin_write(continuation_id)

    async def append(
        self, continuation_id: str, conv: Conversation, msg: Message, lease: object
    ) -> None:
        self._check()
        await super().append(continuation_id, conv, msg, lease)

    async def release(self, continuation_id: str, lease: object, *, drop: bool) -> None:
        self._check()
        await super().release(continuation_id, lease, drop=drop)

    async def abandon(self, continuation_id: str, lease: object) -> None:
        self._check()
        await super().abandon(continuation_id, lease)

    async def invalidate_all(self) -> None:
        self._check()
        self.invalidations += 1
        await super().invalidate_all()

    async def ping(self) -> None:
        self._check()


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def parts() -> tuple[CacheGuard, SwitchableCache, Clock, InMemoryMetricReader, Dependencies]:
    reader = InMemoryMetricReader()
    dependencies = Dependencies()
    metrics = StorageMetrics(MeterProvider(metric_readers=[reader]).get_meter("t"), dependencies)
    cache, clock = SwitchableCache(), Clock()
    guard = CacheGuard(cache, metrics, dependencies, retry_s=1.0, log_interval_s=60.0, clock=clock)
    return guard, cache, clock, reader, dependencies


def errors(reader: InMemoryMetricReader) -> int:
    return sum(
        int(p.value)
        for attrs, p in metric_points(reader, "exai.storage.cache.lookups")
        if attrs == {"exai.cache.result": "error"}
    )


def up_gauge(reader: InMemoryMetricReader) -> dict[str, int]:
    return {
        str(attrs["exai.dependency"]): int(p.value)
        for attrs, p in metric_points(reader, "exai.storage.dependency.up")
    }


async def test_failures_are_counted_skipped_and_logged_once(
    parts: tuple[CacheGuard, SwitchableCache, Clock, InMemoryMetricReader, Dependencies],
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard, cache, clock, reader, dependencies = parts
    caplog.set_level(logging.INFO, logger="storage_adapter.cache.guard")
    cache.down = True
    assert await guard.lookup("a") is None
    assert dependencies.cache_up is False
    assert up_gauge(reader)["cache"] == 0
    calls = cache.calls
    for _ in range(10):  # within retry_s: the cache is not contacted at all
        assert await guard.lookup("a") is None
    assert cache.calls == calls
    assert errors(reader) == 11

    clock.now += 1.5  # retry time: contacted again, still down, still one warning
    assert await guard.lookup("a") is None
    assert cache.calls == calls + 1

    # Only the guard's own records: another test's OTLP exporter thread may still be
    # retrying in the background and log a warning of its own into caplog.
    def guard_warnings() -> int:
        return sum(
            1
            for r in caplog.records
            if r.name == "storage_adapter.cache.guard" and r.levelno == logging.WARNING
        )

    assert guard_warnings() == 1

    clock.now += 61  # a reminder per log interval while the outage lasts
    await guard.lookup("a")
    assert guard_warnings() == 2

    cache.down = False
    clock.now += 1.5
    assert await guard.lookup("a") is not None
    assert dependencies.cache_up is True and up_gauge(reader)["cache"] == 1
    guard_records = [r for r in caplog.records if r.name == "storage_adapter.cache.guard"]
    assert "available again" in guard_records[-1].getMessage()


async def test_probe_ignores_the_retry_time(
    parts: tuple[CacheGuard, SwitchableCache, Clock, InMemoryMetricReader, Dependencies],
) -> None:
    guard, cache, _clock, _reader, dependencies = parts
    cache.down = True
    assert await guard.lookup("a") is None
    cache.down = False
    assert await guard.probe() is True  # health notices recovery at once
    assert dependencies.cache_up is True


async def test_a_missed_write_invalidates_before_the_next_read(
    parts: tuple[CacheGuard, SwitchableCache, Clock, InMemoryMetricReader, Dependencies],
) -> None:
    guard, cache, clock, _reader, _deps = parts
    lookup = await guard.lookup("a")
    assert lookup is not None
    await guard.fill("a", history(1), lookup.token)

    lease = await guard.begin_write("a")
    cache.down = True
    await guard.append("a", conversation(), message(2), lease)  # the durable write succeeded
    cache.down = False
    clock.now += 1.5

    after = await guard.lookup("a")
    assert cache.invalidations == 1
    assert after is not None and after.history is None  # the entry without m2 is gone
    again = await guard.lookup("a")
    assert cache.invalidations == 1 and again is not None


async def test_skipped_writes_count_as_missed(
    parts: tuple[CacheGuard, SwitchableCache, Clock, InMemoryMetricReader, Dependencies],
) -> None:
    guard, cache, clock, _reader, _deps = parts
    cache.down = True
    await guard.lookup("a")
    cache.down = False  # back, but the guard is still waiting for its retry time
    lease = await guard.begin_write("a")
    assert lease is None
    await guard.append("a", conversation(), message(2), lease)
    clock.now += 1.5
    await guard.lookup("a")
    assert cache.invalidations == 1
