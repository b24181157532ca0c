"""In-flight call and connection counters that stay exact.

The old daemon leaked slots when a call was cancelled or its client vanished. Here a
slot is only ever taken by a context manager: the check and the increment happen with
no ``await`` in between (so no other task can interleave on the event loop), and the
decrement sits in ``finally``, which runs on success, error, timeout, cancellation and
disconnect alike.

:class:`ConnectionLimiter` also caps sockets that have not authenticated yet (a native
connection before its ``hello``), so idle or hostile sockets can hold at most
`max_unauthenticated` of the places, never all of them. :class:`TokenBucket` paces the
frames of one connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Iterator
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


class Place:
    """One admitted connection's place; authenticated or not yet."""

    def __init__(self, limiter: ConnectionLimiter, *, authenticated: bool) -> None:
        self._limiter = limiter
        self.authenticated = authenticated

    def authenticate(self) -> None:
        """The connection proved its token: it no longer counts as unauthenticated."""
        if not self.authenticated:
            self.authenticated = True
            self._limiter._unauthenticated -= 1


class ConnectionLimiter:
    """A cap on open WebSocket connections, and a smaller one on those not yet
    authenticated (so they cannot starve authenticated ones)."""

    def __init__(self, max_connections: int, max_unauthenticated: int | None = None) -> None:
        self.max_connections = max_connections
        self.max_unauthenticated = (
            max_connections if max_unauthenticated is None else max_unauthenticated
        )
        self._open = 0
        self._unauthenticated = 0

    @property
    def open(self) -> int:
        return self._open

    @property
    def unauthenticated(self) -> int:
        return self._unauthenticated

    @contextmanager
    def admit(self, *, authenticated: bool = False) -> Iterator[Place | None]:
        """Yields the connection's place (None: over a cap); it is held for the body."""
        if self._open >= self.max_connections or (
            not authenticated and self._unauthenticated >= self.max_unauthenticated
        ):
            yield None
            return
        place = Place(self, authenticated=authenticated)
        self._open += 1
        if not authenticated:
            self._unauthenticated += 1
        try:
            yield place
        finally:
            self._open -= 1
            if not place.authenticated:
                self._unauthenticated -= 1


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; one frame takes one token.

    Pure arithmetic on `clock` (monotonic seconds), so tests drive it with a fake clock.
    """

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def take(self) -> bool:
        """Take a token if one is there."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def retry_after_s(self) -> float:
        """Seconds until the next token."""
        self._refill()
        return max(0.0, (1 - self._tokens) / self.rate)
