"""Group commit: appends that arrive while a write is in flight share one transaction.

An append joins a queue. While fewer than ``max_in_flight`` batches run, a flusher takes
everything queued (up to ``max_batch``, oldest first) and hands it to ``run_batch``; what
arrives meanwhile waits for the next batch. There is no timer: a lone append goes at
once, so a sequential writer waits for nothing, and under load N messages cost one
commit (one WAL flush) instead of N.

The flushers run in tasks of their own, in an empty context: a caller going away never
cancels a write, and no request's span becomes the parent of another's statements (each
pending append carries its caller's context for ``run_batch`` to enter).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from opentelemetry import context as otel_context

logger = logging.getLogger(__name__)

R = TypeVar("R")
T = TypeVar("T")


@dataclass(eq=False)
class Pending(Generic[R, T]):
    """One queued request: what to write, where its outcome goes, its caller's context."""

    request: R
    future: asyncio.Future[T]
    context: otel_context.Context
    deadline: float
    """time.monotonic() after which it may no longer start (its write lease bounds it)."""

    def settle(self, outcome: T | BaseException) -> None:
        if self.future.done():
            return
        if isinstance(outcome, BaseException):
            self.future.set_exception(outcome)
        else:
            self.future.set_result(outcome)


RunBatch = Callable[[list[Pending[R, T]]], Awaitable[Sequence[Pending[R, T]]]]
"""Writes a batch and settles each item it wrote or refused; returns those it did not
start (they go back to the head of the queue)."""


class GroupCommit(Generic[R, T]):
    def __init__(
        self,
        run_batch: RunBatch[R, T],
        *,
        max_batch: int,
        max_in_flight: int,
        queue_timeout_s: float,
        expired: Callable[[], BaseException],
    ) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._queue_timeout_s = queue_timeout_s
        self._expired = expired
        self._queue: deque[Pending[R, T]] = deque()
        self._flushers: set[asyncio.Task[None]] = set()

    async def submit(self, request: R) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        deadline = time.monotonic() + self._queue_timeout_s
        self._queue.append(Pending(request, future, otel_context.get_current(), deadline))
        if len(self._flushers) < self._max_in_flight:
            task = asyncio.create_task(self._flush(), context=contextvars.Context())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        # shield: a caller cancelled while waiting leaves the write (and its future) be.
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        while self._queue:
            batch = self._take()
            if not batch:
                continue
            try:
                left = await self._run_batch(batch)
            except BaseException as exc:  # a bug: never leave a caller waiting
                logger.exception("append batch failed unexpectedly")
                for item in batch:
                    item.settle(exc)
                if not isinstance(exc, Exception):
                    raise  # cancelled (loop shutdown)
                continue
            self._queue.extendleft(reversed(left))
            for item in batch:
                if item not in left and not item.future.done():
                    item.settle(RuntimeError("append batch left a message unsettled"))

    def _take(self) -> list[Pending[R, T]]:
        now = time.monotonic()
        batch: list[Pending[R, T]] = []
        while self._queue and len(batch) < self._max_batch:
            item = self._queue.popleft()
            if now > item.deadline:
                item.settle(self._expired())  # waited too long: nothing was written
            else:
                batch.append(item)
        return batch

    async def wait_idle(self) -> None:
        """Let every queued append finish (shutdown)."""
        while self._flushers:
            await asyncio.wait(set(self._flushers))
