"""How long one request waited on the LLM provider, reported to the caller.

The gateway's overhead histogram and latency objective subtract the provider's time from
a call's duration; only the proxy can tell it apart from its own. :class:`UpstreamClock`
adds up the time a request spends awaiting the provider: sending and the response
headers, reading the body or the next stream bytes, and the back-off between retries
(the provider's 429s and 5xx ask for it; the proxy's own work is what remains). One
request's upstream waits never overlap (attempts and the fallback run one after the
other), so their sum is wall time.

:class:`UpstreamTimingMiddleware` gives each chat request its clock and puts the total in
a ``Server-Timing: upstream;dur=…`` header (exai_contracts.timing); a stream carries the
whole wait in a comment line before ``[DONE]`` (:func:`stream_trailer`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exai_contracts.timing import SERVER_TIMING_HEADER, format_upstream, sse_comment

CHAT_COMPLETIONS_PATH = "/v1/chat/completions"


@dataclass
class UpstreamClock:
    total_s: float = 0.0


# Set per request by the middleware; the tasks a request starts share the one clock.
_clock: ContextVar[UpstreamClock | None] = ContextVar("exai_upstream_clock", default=None)


def current_clock() -> UpstreamClock | None:
    return _clock.get()


@contextmanager
def waiting_on_provider() -> Iterator[None]:
    """Count the block as time spent waiting on the provider (outside a request: no-op)."""
    clock = _clock.get()
    if clock is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        clock.total_s += time.perf_counter() - started


def stream_trailer() -> bytes | None:
    """The SSE comment with the whole stream's upstream wait (None outside a request)."""
    clock = _clock.get()
    return None if clock is None else sse_comment(clock.total_s)


class UpstreamTimingMiddleware:
    """A clock per chat-completion request, and its total in ``Server-Timing``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != CHAT_COMPLETIONS_PATH:
            await self.app(scope, receive, send)
            return
        clock = UpstreamClock()
        token = _clock.set(clock)

        async def send_with_timing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.append(SERVER_TIMING_HEADER, format_upstream(clock.total_s))
            await send(message)

        try:
            await self.app(scope, receive, send_with_timing)
        finally:
            _clock.reset(token)
