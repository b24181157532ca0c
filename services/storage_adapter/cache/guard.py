"""Keeps a failing cache away from clients.

Every failure is counted (lookups as ``exai.cache.result=error``), flips the cache's
``dependency.up`` to 0 and is logged — once when the cache goes down, then at most
every ``log_interval_s`` while it stays down, and once when it comes back. After a
failure the cache is left alone for ``retry_s`` (so a hanging Redis costs one timeout,
not one per request), then tried again: recovery needs no restart.

A write the cache missed (failed or skipped) could leave an old entry behind once the
cache is reachable again, so the next successful contact first invalidates every
entry (:meth:`ConversationCache.invalidate_all`) before anything is read or filled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from storage_adapter.cache import CacheLookup, ConversationCache
from storage_adapter.errors import CacheUnavailable
from storage_adapter.models import Conversation, History, Message
from storage_adapter.telemetry import Dependencies, StorageMetrics

logger = logging.getLogger(__name__)

T = TypeVar("T")


class _Skipped(CacheUnavailable):
    """The cache failed recently; not contacted until its retry time."""


class CacheGuard:
    def __init__(
        self,
        cache: ConversationCache,
        metrics: StorageMetrics,
        dependencies: Dependencies,
        *,
        retry_s: float,
        log_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache = cache
        self._metrics = metrics
        self._dependencies = dependencies
        self._retry_s = retry_s
        self._log_interval_s = log_interval_s
        self._clock = clock
        self._retry_at = 0.0
        self.last_error = ""
        self._last_log = 0.0
        # Sequence numbers, not a flag: a write missed while an invalidation is in
        # flight must trigger another one.
        self._missed_writes = 0
        self._invalidated_through = 0

    @property
    def backend(self) -> str:
        return self.cache.backend

    @property
    def up(self) -> bool:
        return self._dependencies.cache_up

    async def _prepare(self, *, probing: bool = False) -> None:
        if not self.up and not probing and self._clock() < self._retry_at:
            raise _Skipped("cache skipped after a recent failure")
        target = self._missed_writes
        if target > self._invalidated_through:
            await self.cache.invalidate_all()
            self._invalidated_through = max(self._invalidated_through, target)
            logger.info("cache (%s) entries invalidated after missed writes", self.backend)

    def _failed(self, exc: CacheUnavailable) -> None:
        now = self._clock()
        if isinstance(exc, _Skipped):
            return
        self.last_error = str(exc)
        self._retry_at = now + self._retry_s
        if self.up:
            self._dependencies.cache_up = False
            self._last_log = now
            logger.warning(
                "cache (%s) unavailable, serving from the durable store: %s", self.backend, exc
            )
        elif now - self._last_log >= self._log_interval_s:
            self._last_log = now
            logger.warning("cache (%s) still unavailable: %s", self.backend, exc)

    def _succeeded(self) -> None:
        if not self.up:
            self._dependencies.cache_up = True
            logger.info("cache (%s) available again", self.backend)

    async def lookup(self, continuation_id: str) -> CacheLookup | None:
        """The cache's answer, or None (counted as an error) when it cannot be asked."""
        try:
            await self._prepare()
            result = await self.cache.lookup(continuation_id)
        except CacheUnavailable as exc:
            self._failed(exc)
            self._metrics.cache_lookup("error")
            return None
        self._succeeded()
        return result

    async def fill(self, continuation_id: str, history: History, token: object) -> None:
        try:
            await self._prepare()
            await self.cache.fill(continuation_id, history, token)
        except CacheUnavailable as exc:
            self._failed(exc)
            return
        self._succeeded()

    async def _write(self, step: Callable[[], Awaitable[T]]) -> T | None:
        """A step of a write: a failure means the cache may have missed the write."""
        try:
            await self._prepare()
            result = await step()
        except CacheUnavailable as exc:
            self._missed_writes += 1
            self._failed(exc)
            return None
        self._succeeded()
        return result

    async def begin_write(self, continuation_id: str) -> object:
        """The lease, or None when the cache could not be asked (the write goes on)."""
        return await self._write(lambda: self.cache.begin_write(continuation_id))

    async def append(
        self, continuation_id: str, conversation: Conversation, message: Message, lease: object
    ) -> None:
        await self._write(lambda: self.cache.append(continuation_id, conversation, message, lease))

    async def release(self, continuation_id: str, lease: object, *, drop: bool) -> None:
        await self._write(lambda: self.cache.release(continuation_id, lease, drop=drop))

    async def abandon(self, continuation_id: str, lease: object) -> None:
        await self._write(lambda: self.cache.abandon(continuation_id, lease))

    async def probe(self) -> bool:
        """Health check: always contacts the cache, whatever the retry time."""
        try:
            await self._prepare(probing=True)
            await self.cache.ping()
        except CacheUnavailable as exc:
            self._failed(exc)
            return False
        self._succeeded()
        return True
