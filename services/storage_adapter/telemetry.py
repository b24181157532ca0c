"""The adapter's metrics (DESIGN §6) and the instrumentation of its clients.

Metric labels are bounded: ``exai.cache.result`` (hit|miss|error), ``exai.dependency``
(cache|durable), ``exai.operation`` (the store operation), ``db.system.name`` (the
backend). Continuation IDs go on spans only.

``exai.storage.dependency.configured`` is 1 for each dependency and the backend that
serves it (``cache``: redis | memory; ``durable``: postgresql | sqlite | supabase), so a
dashboard can say "in-process memory cache" where a Redis card would show "No data".
``exai.storage.durable.errors`` starts at 0 for every operation (``rate()`` then sees
the first error). The Supabase REST calls are database spans, not HTTP or Redis ones
(storage_adapter.store.supabase); the adapter's own metrics count Redis only through
the cache's lookups, never by span or HTTP method.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.semconv.attributes.db_attributes import DB_SYSTEM_NAME
from sqlalchemy.ext.asyncio import AsyncEngine

from exai_telemetry import names
from exai_telemetry.setup import Telemetry

logger = logging.getLogger(__name__)

CacheResult = Literal["hit", "miss", "error"]

# Messages stored per committed append transaction (group commit, Postgres): mostly 1
# when idle, up to the batch size under load. One metric of this adapter's own, so
# it lives here rather than in exai_telemetry.names.
M_STORAGE_APPEND_COMMIT_MESSAGES = "exai.storage.append.commit.messages"
# Every operation that reaches the durable store (storage_adapter.service), for the
# error counter's series at 0.
DURABLE_OPERATIONS = (
    "initialize",
    "create_conversation",
    "get_conversation",
    "append_message",
    "ping",
)


@dataclass
class Dependencies:
    """Last known state of each dependency, read by the `dependency.up` gauge."""

    cache_up: bool = True
    durable_up: bool = False


class StorageMetrics:
    def __init__(self, meter: Meter, dependencies: Dependencies) -> None:
        self._dependencies = dependencies
        # exai.dependency -> db.system.name of its backend, once built (the lifespan).
        self._configured: dict[str, str] = {}
        self._lookups = meter.create_counter(
            names.M_STORAGE_CACHE_LOOKUPS,
            unit="{lookup}",
            description="Conversation cache lookups by result (hit, miss, error)",
        )
        self._durable_errors = meter.create_counter(
            names.M_STORAGE_DURABLE_ERRORS,
            unit="{error}",
            description="Durable store operations that failed because the store was unavailable",
        )
        self._commit_messages = meter.create_histogram(
            M_STORAGE_APPEND_COMMIT_MESSAGES,
            unit="{message}",
            description="Messages stored per committed append transaction",
            explicit_bucket_boundaries_advisory=[1, 2, 4, 8, 16, 32],
        )
        meter.create_observable_gauge(
            names.M_STORAGE_DEPENDENCY_UP,
            callbacks=[self._observe_dependencies],
            unit="{status}",
            description="1 when the dependency answered its last use or check, else 0",
        )
        meter.create_observable_gauge(
            names.M_STORAGE_DEPENDENCY_CONFIGURED,
            callbacks=[self._observe_configured],
            unit="{dependency}",
            description="1 for each configured dependency, by the backend that serves it",
        )
        for operation in DURABLE_OPERATIONS:
            self._durable_errors.add(0, {names.OPERATION: operation})

    def configured(self, *, cache: str, durable: str) -> None:
        """The backends in use (their `backend` names are db.system.name values)."""
        self._configured = {"cache": cache, "durable": durable}

    def cache_lookup(self, result: CacheResult) -> None:
        self._lookups.add(1, {names.CACHE_RESULT: result})

    def durable_error(self, operation: str) -> None:
        self._durable_errors.add(1, {names.OPERATION: operation})

    def append_committed(self, messages: int) -> None:
        self._commit_messages.record(messages)

    def _observe_configured(self, _options: CallbackOptions) -> Iterable[Observation]:
        for dependency, system in list(self._configured.items()):
            yield Observation(1, {names.DEPENDENCY: dependency, DB_SYSTEM_NAME: system})

    def _observe_dependencies(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(int(self._dependencies.cache_up), {names.DEPENDENCY: "cache"})
        yield Observation(int(self._dependencies.durable_up), {names.DEPENDENCY: "durable"})


def instrument_engine(engine: AsyncEngine, telemetry: Telemetry) -> Callable[[], None]:
    """DB client spans for ``engine`` (statements with placeholders, never parameters).

    Returns the undo. ``SQLAlchemyInstrumentor`` is a process-wide singleton: while one
    app holds it, a second app in the same process (tests only) runs without DB spans.
    """
    instrumentor = SQLAlchemyInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        logger.warning("SQLAlchemy already instrumented in this process; no DB spans here")
        return lambda: None
    instrumentor.instrument(
        engine=engine.sync_engine,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        enable_commenter=False,
    )

    def undo() -> None:
        instrumentor.uninstrument()

    return undo


def instrument_redis(client: aioredis.Redis, telemetry: Telemetry) -> None:
    """Client spans per command; the instrumentation records `CMD ? ?`, no values."""
    RedisInstrumentor.instrument_client(client, tracer_provider=telemetry.tracer_provider)
