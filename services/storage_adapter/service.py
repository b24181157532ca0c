"""Durable first, then cache: the adapter's one piece of orchestration.

- write: a write lease in the cache, the durable store (one transaction), then the
  lease ended with the outcome (see :mod:`storage_adapter.cache`): the cache never
  holds a message that is not durable, converges on one that is whatever happens in
  between, and a cache failure never fails a write. The write and its cache update
  run as one task that survives the request being cancelled (:meth:`close` waits);
- read: the cache if it holds enough turns, else the durable store, then refill the
  cache (only if no write happened meanwhile);
- ownership: a conversation belongs to the client that created it; to anyone else it
  does not exist (404), and its continuation ID is taken (409 on create);
- a store that refuses the data (:class:`InvalidData`) answered: that is the client's
  error, and neither ``durable_up`` nor the failure counter moves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from exai_telemetry.health import ComponentHealth
from storage_adapter.cache.guard import CacheGuard
from storage_adapter.errors import (
    ContinuationIdTaken,
    ConversationNotFound,
    StorageAdapterError,
    StoreUnavailable,
)
from storage_adapter.models import (
    AppendResult,
    Conversation,
    JsonObject,
    Message,
    NewMessage,
    utc_now,
)
from storage_adapter.store import DurableStore
from storage_adapter.telemetry import Dependencies, StorageMetrics

logger = logging.getLogger(__name__)

T = TypeVar("T")

_LOG_INTERVAL_S = 60.0
# A write lease must outlast any durable write: SQL is a pool wait, a connect and up to
# six statements (Postgres group commit: a queue wait and a shared batch, bounded to at
# most 19 timeouts in store.sql), Supabase up to four requests of up to four httpx
# phases, each phase bounded by EXAI_DB_TIMEOUT_S. Longer only delays dropping a dead
# writer's entry.
WRITE_LEASE_DB_TIMEOUTS = 20


class ConversationService:
    def __init__(
        self,
        store: DurableStore,
        cache: CacheGuard,
        metrics: StorageMetrics,
        dependencies: Dependencies,
        *,
        cache_max_turns: int,
    ) -> None:
        self.store = store
        self.cache = cache
        self._metrics = metrics
        self._dependencies = dependencies
        self._cache_max_turns = cache_max_turns
        self._initialized = False
        self._init_lock = asyncio.Lock()
        self._init_attempts = 0
        self._init_failure: str | None = None
        self._last_outage_log = 0.0
        self._writes: set[asyncio.Task[AppendResult]] = set()

    async def start(self) -> None:
        """Create or check the schema now; if the store is down, keep trying on use."""
        try:
            await self._ensure_initialized()
        except StoreUnavailable as exc:
            logger.error("durable store (%s) not ready at start-up: %s", self.store.backend, exc)

    async def _ensure_initialized(self) -> None:
        if self._initialized:
            return
        attempts_seen = self._init_attempts
        async with self._init_lock:
            if self._initialized:
                return
            if self._init_attempts != attempts_seen and self._init_failure is not None:
                # It failed while this request waited: a burst of requests during an
                # outage costs one attempt, not one timeout per request in a queue.
                raise StoreUnavailable("initialize", self._init_failure)
            self._init_attempts += 1
            try:
                await self._durable("initialize", self.store.initialize)
            except StoreUnavailable as exc:
                self._init_failure = exc.reason
                raise
            self._initialized = True
            logger.info("durable store (%s) ready", self.store.backend)

    async def _durable(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            result = await call()
        except StoreUnavailable as exc:
            self._metrics.durable_error(operation)
            self._durable_failed(exc)
            raise
        if not self._dependencies.durable_up:
            self._dependencies.durable_up = True
            if self._initialized:
                logger.info("durable store (%s) available again", self.store.backend)
        return result

    def _durable_failed(self, exc: StoreUnavailable) -> None:
        now = time.monotonic()
        was_up = self._dependencies.durable_up
        self._dependencies.durable_up = False
        if was_up or now - self._last_outage_log >= _LOG_INTERVAL_S:
            self._last_outage_log = now
            logger.warning("durable store (%s) unavailable: %s", self.store.backend, exc)

    async def _run(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        await self._ensure_initialized()
        return await self._durable(operation, call)

    async def create_conversation(
        self, continuation_id: str, client_id: str, title: str | None, metadata: JsonObject
    ) -> tuple[Conversation, bool]:
        conversation, created = await self._run(
            "create_conversation",
            lambda: self.store.get_or_create_conversation(
                continuation_id, client_id, title, metadata, utc_now()
            ),
        )
        if conversation.client_id != client_id:
            raise ContinuationIdTaken(continuation_id)
        return conversation, created

    async def get_history(
        self, continuation_id: str, client_id: str, limit: int
    ) -> tuple[Conversation, tuple[Message, ...], bool]:
        """The conversation, its last ``limit`` messages (oldest first), and whether
        older messages exist; ConversationNotFound if ``client_id`` does not own it."""
        lookup = await self.cache.lookup(continuation_id)
        if lookup is not None:
            cached = lookup.history
            if cached is not None and cached.can_serve(limit):
                self._metrics.cache_lookup("hit")
                if cached.conversation.client_id != client_id:
                    raise ConversationNotFound(continuation_id)
                return (cached.conversation, *cached.last(limit))
            self._metrics.cache_lookup("miss")
        # Read at least a full cache entry, so that the refill serves the next reads.
        wanted = max(limit, self._cache_max_turns)
        history = await self._run(
            "get_conversation", lambda: self.store.load_history(continuation_id, wanted)
        )
        if history is None:
            raise ConversationNotFound(continuation_id)
        if lookup is not None:
            await self.cache.fill(continuation_id, history, lookup.token)
        if history.conversation.client_id != client_id:
            raise ConversationNotFound(continuation_id)
        return (history.conversation, *history.last(limit))

    async def append_message(
        self, continuation_id: str, client_id: str, message: NewMessage
    ) -> AppendResult:
        """Store ``message`` (once per idempotency key) and update the cache.

        Cancelling the caller does not cancel the write: between the commit and the
        cache update is no place to stop.
        """
        task = asyncio.create_task(self._append(continuation_id, client_id, message))
        self._writes.add(task)
        task.add_done_callback(self._write_done)
        return await asyncio.shield(task)

    def _write_done(self, task: asyncio.Task[AppendResult]) -> None:
        self._writes.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller that went away cannot

    async def _append(
        self, continuation_id: str, client_id: str, message: NewMessage
    ) -> AppendResult:
        await self._ensure_initialized()  # before the lease: it bounds the write alone
        lease = await self.cache.begin_write(continuation_id)
        try:
            result = await self._run(
                "append_message",
                lambda: self.store.append_message(continuation_id, client_id, message, utc_now()),
            )
        except StorageAdapterError as exc:
            if isinstance(exc, StoreUnavailable) and exc.in_doubt:
                await self.cache.abandon(continuation_id, lease)
            else:  # refused, or failed before committing: nothing written
                await self.cache.release(continuation_id, lease, drop=False)
            raise
        except BaseException:
            await self.cache.abandon(continuation_id, lease)
            raise
        if result.created:
            await self.cache.append(continuation_id, result.conversation, result.message, lease)
        else:
            # A replay: the first attempt may have committed without updating the
            # cache (its answer lost, its replica gone). Whatever the entry holds,
            # the next read takes it from the durable store.
            await self.cache.release(continuation_id, lease, drop=True)
        return result

    async def durable_health(self) -> ComponentHealth:
        try:
            await self._run("ping", self.store.ping)
        except StoreUnavailable as exc:
            return ComponentHealth(False, detail={"error": exc.reason})
        return ComponentHealth(True)

    async def cache_health(self) -> ComponentHealth:
        if await self.cache.probe():
            return ComponentHealth(True, required=False)
        return ComponentHealth(False, required=False, detail={"error": self.cache.last_error})

    async def close(self) -> None:
        if self._writes:
            # Each is bounded by the store's and the cache's own timeouts.
            await asyncio.wait(set(self._writes))
        await self.store.close()
        await self.cache.cache.close()
