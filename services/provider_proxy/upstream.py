"""Talking to one provider: attempts, retries and its circuit breaker.

An :class:`Upstream` owns the provider's adapter, HTTP client and breaker. One
logical call (:class:`~provider_proxy.telemetry.ChatCall`) makes up to
`EXAI_RETRY_MAX_ATTEMPTS` attempts, each its own span; httpx errors are translated
into :mod:`provider_proxy.errors` here, at the boundary. Streams are retried only
until their first event has arrived — nothing has reached the client before that.

What the provider sends is bounded (:class:`ResponseLimits`): a JSON body, one SSE line
or event, a whole stream. A stream is complete only at `[DONE]`; one that just ends is
:class:`~provider_proxy.errors.UpstreamTruncated`, never a short success.

The breaker hears only about the provider: its answers and its silence. A full
connection pool of our own, a spent request deadline, a cancelled call or a bug in the
proxy hand a half-open probe's slot back without a verdict.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import anyio
import httpx
from opentelemetry import trace
from opentelemetry.trace import Span

from provider_proxy.adapters import CHAT_PATH, ProviderAdapter
from provider_proxy.circuit import Admission, CircuitBreaker
from provider_proxy.completions import ResponseMeta, parse_chunk, parse_completion
from provider_proxy.deadline import Deadline
from provider_proxy.errors import (
    CircuitOpen,
    DeadlineExceeded,
    PoolExhausted,
    ProxyError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamMalformed,
    UpstreamRateLimited,
    UpstreamReadTimeout,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamTimeout,
    UpstreamTooLarge,
    UpstreamTruncated,
)
from provider_proxy.retry import Jitter, RetryPolicy, parse_retry_after
from provider_proxy.sse import DONE, LineSplitter, SseDecoder, SseLimitExceeded
from provider_proxy.telemetry import ChatCall, end_attempt
from provider_proxy.timing import waiting_on_provider
from provider_proxy.types import AttemptOutcome, JsonObject, ProviderName

logger = logging.getLogger(__name__)

T = TypeVar("T")
ERROR_DETAIL_CHARS = 200
REQUEST_TIMEOUT = 408


@dataclass(frozen=True)
class ResponseLimits:
    """How much a provider may send (`EXAI_MAX_UPSTREAM_BODY_BYTES`,
    `EXAI_MAX_SSE_LINE_BYTES`, `EXAI_MAX_STREAM_BYTES`)."""

    body_bytes: int = 16 * 1024 * 1024
    sse_line_bytes: int = 1024 * 1024
    stream_bytes: int = 64 * 1024 * 1024


class UpstreamStream:
    """A provider's SSE stream after its first event: the rest, chunk by chunk."""

    def __init__(
        self,
        upstream: Upstream,
        response: httpx.Response,
        attempt_span: Span,
        on_chunk: Callable[[], None],
    ) -> None:
        """`on_chunk` is called as each chunk arrives (for the streaming timings)."""
        self.upstream = upstream
        self._on_chunk = on_chunk
        self.attempt_span = attempt_span
        self.first: JsonObject = {}
        self._response = response
        limits = upstream.limits
        self._max_stream_bytes = limits.stream_bytes
        self._bytes = response.aiter_bytes()
        self._splitter = LineSplitter(limits.sse_line_bytes)
        self._decoder = SseDecoder(limits.sse_line_bytes)
        self._lines: deque[bytes] = deque()
        self._received = 0  # bytes of the lines taken so far
        self._eof = False

    async def prime(self, deadline: Deadline) -> None:
        """Wait for the first event: until it is here, the attempt may still fail over."""
        first = await self.next_chunk(deadline)
        if first is None:
            raise UpstreamMalformed(self.upstream.name, "stream ended without any event")
        self.first = first

    async def next_chunk(self, deadline: Deadline) -> JsonObject | None:
        """The next chunk, or None at `[DONE]`; :class:`UpstreamTruncated` if the
        stream ends before it."""
        provider = self.upstream.name
        try:
            async with deadline.guard():
                while True:
                    line = await self._next_line()
                    data = self._decoder.flush() if line is None else self._decoder.feed(line)
                    if data is None:
                        if line is None:
                            raise UpstreamTruncated(provider, "stream ended without [DONE]")
                        continue
                    if data.strip() == DONE:
                        return None
                    chunk = parse_chunk(data, provider)
                    self._on_chunk()
                    return chunk
        except httpx.HTTPError as exc:
            raise translate(exc, provider) from exc
        except SseLimitExceeded as exc:
            raise UpstreamTooLarge(provider, f"{exc} (EXAI_MAX_SSE_LINE_BYTES)") from None

    async def _next_line(self) -> str | None:
        """The next line of the stream, or None at its end."""
        while not self._lines:
            if self._eof:
                return None
            with waiting_on_provider():
                data = await anext(self._bytes, None)
            if data is None:
                self._eof = True
                tail = self._splitter.finish()
                if tail is not None:
                    self._lines.append(tail)
            else:
                self._lines.extend(self._splitter.feed(data))
        line = self._lines.popleft()
        self._received += len(line) + 1
        if self._received > self._max_stream_bytes:
            raise UpstreamTooLarge(
                self.upstream.name,
                f"stream longer than {self._max_stream_bytes} bytes (EXAI_MAX_STREAM_BYTES)",
            )
        return line.decode("utf-8", "replace")

    async def aclose(self) -> None:
        # Shielded: this runs when the client has gone and the task is being cancelled;
        # the upstream connection must still be closed.
        with anyio.CancelScope(shield=True):
            await self._response.aclose()


class Upstream:
    def __init__(
        self,
        adapter: ProviderAdapter,
        client: httpx.AsyncClient,
        breaker: CircuitBreaker,
        policy: RetryPolicy,
        limits: ResponseLimits,
        jitter: Jitter = random.uniform,
    ) -> None:
        self.adapter = adapter
        self.client = client
        self.breaker = breaker
        self.policy = policy
        self.limits = limits
        self._jitter = jitter

    @property
    def name(self) -> ProviderName:
        return self.adapter.name

    async def complete(
        self, call: ChatCall, payload: JsonObject, deadline: Deadline
    ) -> tuple[JsonObject, ResponseMeta]:
        async def attempt(span: Span) -> tuple[JsonObject, ResponseMeta]:
            response = await self._send(payload, deadline)
            call.observe_rate_limits(response.headers)
            try:
                raw = await self._read(response, deadline)
            finally:
                await response.aclose()
            self._check_status(response, raw)
            return parse_completion(raw, self.name)

        return await self._with_retries(call, deadline, attempt, end_on_success=True)

    async def open_stream(
        self, call: ChatCall, payload: JsonObject, deadline: Deadline
    ) -> UpstreamStream:
        """The provider's stream once its first event has arrived (the attempt span
        stays open until the stream is closed)."""

        async def attempt(span: Span) -> UpstreamStream:
            response = await self._send(payload, deadline)
            call.observe_rate_limits(response.headers)
            try:
                if response.status_code != 200:
                    self._check_status(response, await self._read(response, deadline))
                stream = UpstreamStream(self, response, span, call.chunk_arrived)
                await stream.prime(deadline)
                return stream
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await response.aclose()
                raise

        return await self._with_retries(call, deadline, attempt, end_on_success=False)

    async def _with_retries(
        self,
        call: ChatCall,
        deadline: Deadline,
        attempt: Callable[[Span], Awaitable[T]],
        *,
        end_on_success: bool,
    ) -> T:
        number = 0
        while True:
            number += 1
            admission = self.breaker.allow()
            if not admission:
                raise CircuitOpen(self.name)
            span = call.start_attempt(number)
            try:
                with trace.use_span(
                    span, end_on_exit=False, record_exception=False, set_status_on_exception=False
                ):
                    result = await attempt(span)
            except UpstreamError as exc:
                end_attempt(span, exc.outcome, exc)
                self.verdict(exc)
                delay = self.policy.next_delay(number, exc, deadline.remaining(), self._jitter)
                if delay is None or exc.retry_reason is None or self.breaker.state == "open":
                    raise
                logger.info(
                    "%s attempt %d failed (%s); retrying in %.2fs",
                    self.name,
                    number,
                    exc.error_type,
                    delay,
                )
                call.note_retry(exc.retry_reason)
                # The provider's time: its 429 or failure asked for the wait.
                with waiting_on_provider():
                    await asyncio.sleep(delay)
            except ProxyError as exc:
                # Ours, not the provider's: the deadline ran out, or the pool was full.
                end_attempt(span, attempt_outcome(exc), exc)
                self.no_verdict(admission)
                raise
            except BaseException as exc:
                # The client left, or a bug: no verdict on the provider either way.
                cancelled = isinstance(exc, asyncio.CancelledError)
                end_attempt(span, "cancelled" if cancelled else "error", None)
                self.no_verdict(admission)
                raise
            else:
                self.breaker.record_success()
                if end_on_success:
                    end_attempt(span, "ok", None)
                return result

    def no_verdict(self, admission: Admission) -> None:
        """The attempt says nothing about the provider; a probe's slot goes back."""
        self.breaker.release(admission)

    def verdict(self, exc: UpstreamError) -> None:
        """The provider failed `exc` (also for a stream that breaks later)."""
        if isinstance(exc, UpstreamRejected):
            # The provider is up and answering; the request (or our key) was the problem.
            self.breaker.record_success()
            return
        before = self.breaker.state
        self.breaker.record_failure()
        if self.breaker.state == "open" and before != "open":
            logger.warning(
                "%s circuit opened after %d consecutive failures (last: %s)",
                self.name,
                self.breaker.consecutive_failures,
                exc.error_type,
            )

    async def _send(self, payload: JsonObject, deadline: Deadline) -> httpx.Response:
        timeouts = self.adapter.timeouts
        remaining = max(deadline.remaining(), 0.001)
        request = self.client.build_request(
            "POST",
            CHAT_PATH,
            json=payload,
            timeout=httpx.Timeout(
                connect=min(timeouts.connect_s, remaining),
                read=min(timeouts.read_s, remaining),
                write=min(timeouts.read_s, remaining),
                pool=min(timeouts.connect_s, remaining),
            ),
        )
        try:
            async with deadline.guard():
                with waiting_on_provider():
                    return await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise translate(exc, self.name) from exc

    async def _read(self, response: httpx.Response, deadline: Deadline) -> bytes:
        """The whole body, refusing more than the body limit."""
        chunks: list[bytes] = []
        size = 0
        limit = self.limits.body_bytes
        try:
            async with deadline.guard():
                with waiting_on_provider():
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > limit:
                            raise UpstreamTooLarge(
                                self.name,
                                f"response larger than {limit} bytes "
                                "(EXAI_MAX_UPSTREAM_BODY_BYTES)",
                            )
                        chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise translate(exc, self.name) from exc
        return b"".join(chunks)

    def _check_status(self, response: httpx.Response, raw: bytes) -> None:
        error = status_error(self.name, response.status_code, response.headers, raw)
        if error is not None:
            raise error


def status_error(
    name: ProviderName, status: int, headers: httpx.Headers, raw: bytes
) -> UpstreamError | None:
    """What a non-200 answer means (None for 200)."""
    if status == 200:
        return None
    if status == 429:
        return UpstreamRateLimited(name, parse_retry_after(headers.get("retry-after")))
    if status == REQUEST_TIMEOUT:
        # The provider gave up waiting for our request: it never ran, so may run again.
        return UpstreamTimeout(name, f"upstream answered HTTP {status}")
    if status >= 500:
        return UpstreamServerError(name, status)
    if status >= 400:
        return UpstreamRejected(name, status, error_detail(raw))
    return UpstreamMalformed(name, f"unexpected HTTP {status}")


def translate(exc: httpx.HTTPError, name: ProviderName) -> UpstreamError | PoolExhausted:
    """An httpx error as the proxy's own (the caller chains it with `from`)."""
    what = f"{type(exc).__name__} talking to the provider"
    if isinstance(exc, httpx.PoolTimeout):
        return PoolExhausted(name)
    if isinstance(exc, httpx.ReadTimeout):
        return UpstreamReadTimeout(name, what)
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(name, what)
    if isinstance(exc, httpx.DecodingError):
        return UpstreamMalformed(name, "response could not be decoded")
    return UpstreamConnectError(name, what)


def attempt_outcome(exc: ProxyError) -> AttemptOutcome | Literal["error"]:
    """An attempt's `exai.provider.attempt.outcome` when it ended with `exc`."""
    if isinstance(exc, UpstreamError):
        return exc.outcome
    if isinstance(exc, PoolExhausted):
        return "pool_exhausted"
    if isinstance(exc, DeadlineExceeded):
        return "timeout"
    return "error"  # a bug of ours


def error_detail(raw: bytes) -> str:
    """The provider's error message (OpenAI shape `{"error": {"message"}}`), shortened."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "no detail"
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message:
        return "no detail"
    return message[:ERROR_DETAIL_CHARS]
