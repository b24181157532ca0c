"""An asyncio loop on a thread, for tests whose driver is synchronous (Hypothesis,
Schemathesis) but whose servers are asyncio: the servers run on the loop, the test
talks to them over loopback sockets like any client would."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class BackgroundLoop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._exit = contextlib.AsyncExitStack()

    def run(self, awaitable: Awaitable[T], timeout_s: float = 60.0) -> T:
        async def wrapped() -> T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout_s)

    def call(self, function: Callable[[], T]) -> T:
        """`function()` on the loop's thread (for reading state the loop owns)."""
        return self.run(_as_coroutine(function))

    def enter(self, context: contextlib.AbstractAsyncContextManager[T]) -> T:
        return self.run(self._exit.enter_async_context(context))

    def close(self) -> None:
        try:
            self.run(self._exit.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


async def _as_coroutine(function: Callable[[], Any]) -> Any:
    return function()
