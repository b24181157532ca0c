"""In-flight call and connection counters that stay exact.

The old daemon leaked slots when a call was cancelled or its client vanished. Here a
slot is only ever taken by a context manager: the check and the increment happen with
no ``await`` in between (so no other task can interleave on the event loop), and the
decrement sits in ``finally``, which runs on success, error, timeout, cancellation and
disconnect alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterator
from contextlib import contextmanager

from ws_gateway.errors import OverCapacity


class InflightLimiter:
    """Per-session and global caps on calls running at once."""

    def __init__(self, *, per_session: int, global_max: int) -> None:
        self.per_session = per_session
        self.global_max = global_max
        self._global = 0
        self._sessions: dict[Hashable, int] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def global_inflight(self) -> int:
        return self._global

    def session_inflight(self, session: Hashable) -> int:
        return self._sessions.get(session, 0)

    @property
    def sessions_with_calls(self) -> int:
        return len(self._sessions)

    async def wait_idle(self) -> None:
        """Return once no call holds a slot (graceful shutdown waits on this)."""
        await self._idle.wait()

    @contextmanager
    def slot(self, session: Hashable) -> Iterator[None]:
        """Hold one slot for the body; OverCapacity if either cap is reached."""
        if self._global >= self.global_max:
            raise OverCapacity(f"gateway is at its limit of {self.global_max} calls in flight")
        in_session = self._sessions.get(session, 0)
        if in_session >= self.per_session:
            raise OverCapacity(
                f"session is at its limit of {self.per_session} calls in flight; retry soon"
            )
        self._global += 1
        self._sessions[session] = in_session + 1
        self._idle.clear()
        try:
            yield
        finally:
            self._global -= 1
            if not self._global:
                self._idle.set()
            remaining = self._sessions[session] - 1
            if remaining:
                self._sessions[session] = remaining
            else:
                # Sessions come and go; an idle one must not hold a dict entry forever.
                del self._sessions[session]


class ConnectionLimiter:
    """A cap on open WebSocket connections."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self._open = 0

    @property
    def open(self) -> int:
        return self._open

    @contextmanager
    def admit(self) -> Iterator[bool]:
        """Yields whether the connection got a place; the place is held for the body."""
        if self._open >= self.max_connections:
            yield False
            return
        self._open += 1
        try:
            yield True
        finally:
            self._open -= 1
