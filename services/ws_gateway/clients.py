"""HTTP clients for provider-proxy and storage-adapter.

Each is one pooled ``httpx.AsyncClient`` instrumented with the gateway's own providers:
the request spans are children of the current call span, and the instrumentation
injects ``traceparent`` + ``baggage`` (the correlation ID rides in baggage). A request
hook adds ``X-Correlation-ID`` for services and humans that read the header.

httpx errors never leave this module: they become :class:`ProviderError` or
:class:`StorageError` with a message that names the dependency, not the content. A chat
completion the proxy *refuses* (a 4xx in its own OpenAI-style error shape, e.g. 400
``model_not_found``) is the caller's mistake: :class:`ProviderRejected`, a
VALIDATION_ERROR carrying the proxy's message.
Cancelling the calling task closes the in-flight request's connection, which is how a
client's ``cancel`` reaches the upstream.

Every chat request to provider-proxy carries ``X-EXAI-Client-ID`` (tokens and spend per
client) and notes, in the running call's :class:`ProviderWaits`, how long the proxy says
it waited on the LLM provider (its ``Server-Timing: upstream`` header, or for a stream
the comment line before ``[DONE]``, exai_contracts.timing): the gateway's overhead is the
call's duration minus that wait.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from pydantic import SecretStr
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from exai_contracts.ids import CLIENT_ID_HEADER, DEFAULT_CLIENT_ID, is_continuation_id
from exai_contracts.timing import SERVER_TIMING_HEADER, parse_sse_comment, parse_upstream
from exai_telemetry.correlation import correlation_headers
from exai_telemetry.http_transport import AiohttpTransport
from exai_telemetry.setup import Telemetry
from ws_gateway.breaker import CircuitBreaker
from ws_gateway.errors import ProviderError, ProviderRejected, StorageError
from ws_gateway.types import JSONObject

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 100
MAX_ERROR_DETAIL = 300
# 4xx answers that say nothing about the request itself: the gateway's own
# credentials/configuration (401, 403, 407), a slow hop (408) or load (429).
NOT_THE_CALLERS_FAULT = frozenset({401, 403, 407, 408, 429})

ChunkSink = Callable[[str], Awaitable[None]]


async def _add_correlation_header(request: httpx.Request) -> None:
    request.headers.update(correlation_headers())


def build_http_client(
    base_url: str, timeout_s: float, telemetry: Telemetry, token: SecretStr | None = None
) -> httpx.AsyncClient:
    """`token`: the callee's internal token (`EXAI_PROVIDER_TOKEN`, `EXAI_STORAGE_TOKEN`),
    sent as `Authorization: Bearer` on every request; None only with EXAI_INTERNAL_AUTH=off.
    The instrumentation records no request headers, and the value is a registered secret."""
    headers = {} if token is None else {"Authorization": f"Bearer {token.get_secret_value()}"}
    client = httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        timeout=httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s)),
        # aiohttp's pool under httpx's API: httpcore's scanned every pooled connection
        # per request (12% of the gateway's CPU under load, docs/benchmarks.md).
        transport=AiohttpTransport(MAX_CONNECTIONS),
        event_hooks={"request": [_add_correlation_header]},
        # Internal hops never go through a proxy picked up from the environment.
        trust_env=False,
    )
    HTTPXClientInstrumentor.instrument_client(
        client,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )
    return client


def _refused_by_proxy(response: httpx.Response) -> bool:
    """A 4xx in the proxy's OpenAI-style error shape: it refused the request as asked.
    (A bare 404 from a wrong EXAI_PROVIDER_URL has another shape and stays a server
    failure.)"""
    if not 400 <= response.status_code < 500 or response.status_code in NOT_THE_CALLERS_FAULT:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), dict)


def _error_detail(response: httpx.Response) -> str:
    """The `error.message` of an OpenAI-style or FastAPI-style body, shortened."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    detail: object = body
    if isinstance(body, dict):
        error = body.get("error")
        detail = (
            error.get("message", error) if isinstance(error, dict) else body.get("detail", body)
        )
    return str(detail)[:MAX_ERROR_DETAIL]


# --- provider-proxy -------------------------------------------------------------------


@dataclass
class ProviderWaits:
    """One call's client and its waits on the LLM providers, as provider-proxy reported
    them. Requests of one call may run in parallel (consensus): :meth:`wall_s` is the
    time during which at least one of them was waiting, not the sum."""

    client_id: str = DEFAULT_CLIENT_ID
    # (start, end) on the time.perf_counter() clock.
    intervals: list[tuple[float, float]] = field(default_factory=list)

    def add(self, started: float, ended: float, upstream_s: float) -> None:
        """A request to the proxy from `started` to `ended` of which the proxy spent
        `upstream_s` waiting on the provider; placed at the request's end (where it
        sits is unknown, and for the union only its length matters much)."""
        wait = min(max(upstream_s, 0.0), max(ended - started, 0.0))
        if wait > 0:
            self.intervals.append((ended - wait, ended))

    def wall_s(self) -> float:
        total = 0.0
        current_start: float | None = None
        current_end = 0.0
        for start, end in sorted(self.intervals):
            if current_start is None or start > current_end:
                if current_start is not None:
                    total += current_end - current_start
                current_start, current_end = start, end
            else:
                current_end = max(current_end, end)
        if current_start is not None:
            total += current_end - current_start
        return total


_waits: ContextVar[ProviderWaits | None] = ContextVar("exai_provider_waits", default=None)


@contextmanager
def tracking_provider_waits(client_id: str) -> Iterator[ProviderWaits]:
    """Provider requests made inside the block (tasks it starts included) note their
    waits here and carry `client_id`."""
    waits = ProviderWaits(client_id)
    token = _waits.set(waits)
    try:
        yield waits
    finally:
        _waits.reset(token)


def current_provider_waits() -> ProviderWaits | None:
    return _waits.get()


def _client_headers() -> dict[str, str]:
    waits = _waits.get()
    return {CLIENT_ID_HEADER: waits.client_id if waits is not None else DEFAULT_CLIENT_ID}


def _note_wait(started: float, upstream_s: float | None) -> None:
    waits = _waits.get()
    if waits is not None and upstream_s is not None:
        waits.add(started, time.perf_counter(), upstream_s)


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)


def _usage(raw: object) -> dict[str, int]:
    if not isinstance(raw, dict):
        return {}
    return {k: v for k, v in raw.items() if isinstance(v, int) and not isinstance(v, bool)}


class ProviderClient:
    """The OpenAI-compatible API of provider-proxy (DESIGN §4)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def complete(
        self, model: str, messages: Sequence[JSONObject], *, temperature: float | None = None
    ) -> Completion:
        body = self._body(model, messages, temperature, stream=False)
        started = time.perf_counter()
        try:
            response = await self._http.post(
                "/v1/chat/completions", json=body, headers=_client_headers()
            )
        except httpx.TimeoutException as exc:
            raise ProviderError(f"provider-proxy did not answer in time for {model}") from exc
        except httpx.TransportError as exc:
            raise ProviderError(f"provider-proxy unreachable: {type(exc).__name__}") from exc
        _note_wait(started, parse_upstream(response.headers.get(SERVER_TIMING_HEADER)))
        self._check(response, model, completion=True)
        try:
            data = response.json()
            choice = data["choices"][0]
            return Completion(
                text=str(choice["message"].get("content") or ""),
                model=str(data.get("model") or model),
                finish_reason=choice.get("finish_reason"),
                usage=_usage(data.get("usage")),
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ProviderError(f"provider-proxy sent a malformed completion for {model}") from exc

    async def stream(
        self,
        model: str,
        messages: Sequence[JSONObject],
        on_chunk: ChunkSink,
        *,
        temperature: float | None = None,
    ) -> Completion:
        """Stream the completion over SSE, handing each text delta to `on_chunk`."""
        body = self._body(model, messages, temperature, stream=True)
        parts: list[str] = []
        state: dict[str, Any] = {"model": model, "finish_reason": None, "usage": {}}
        started = time.perf_counter()
        # Until the stream's own figure arrives: the header's (the wait for its start).
        upstream_s: float | None = None
        try:
            async with self._http.stream(
                "POST", "/v1/chat/completions", json=body, headers=_client_headers()
            ) as response:
                upstream_s = parse_upstream(response.headers.get(SERVER_TIMING_HEADER))
                if response.status_code >= 400:
                    await response.aread()
                    self._check(response, model, completion=True)
                async for line in response.aiter_lines():
                    reported = parse_sse_comment(line)
                    if reported is not None:
                        upstream_s = reported
                        continue
                    delta = self._sse_delta(line, model, state)
                    if delta is None:
                        break
                    if delta:
                        parts.append(delta)
                        await on_chunk(delta)
                else:
                    # No `[DONE]`: the answer may be cut anywhere; never take it for whole.
                    raise ProviderError(f"provider-proxy stream for {model} ended without [DONE]")
        except httpx.TimeoutException as exc:
            raise ProviderError(f"provider-proxy stream stalled for {model}") from exc
        except httpx.TransportError as exc:
            raise ProviderError(f"provider-proxy stream broke: {type(exc).__name__}") from exc
        finally:
            _note_wait(started, upstream_s)
        return Completion("".join(parts), state["model"], state["finish_reason"], state["usage"])

    async def models(self) -> list[JSONObject]:
        try:
            response = await self._http.get("/v1/models")
        except httpx.TransportError as exc:
            raise ProviderError(f"provider-proxy unreachable: {type(exc).__name__}") from exc
        self._check(response, "models")
        try:
            data = response.json()["data"]
            return [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError("provider-proxy sent a malformed model list") from exc

    @staticmethod
    def _body(
        model: str, messages: Sequence[JSONObject], temperature: float | None, *, stream: bool
    ) -> JSONObject:
        body: JSONObject = {"model": model, "messages": list(messages), "stream": stream}
        if temperature is not None:
            body["temperature"] = temperature
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    @staticmethod
    def _check(response: httpx.Response, what: str, *, completion: bool = False) -> None:
        if response.status_code < 400:
            return
        if completion and _refused_by_proxy(response):
            raise ProviderRejected(_error_detail(response))
        raise ProviderError(
            f"provider-proxy answered {response.status_code} for {what}: {_error_detail(response)}"
        )

    @staticmethod
    def _sse_delta(line: str, model: str, state: dict[str, Any]) -> str | None:
        """The text delta in one SSE line ('' if none); None at `[DONE]`."""
        if not line.startswith("data:"):
            return ""
        payload = line[5:].strip()
        if payload == "[DONE]":
            return None
        try:
            chunk = json.loads(payload)
        except ValueError as exc:
            raise ProviderError(
                f"provider-proxy sent a malformed stream chunk for {model}"
            ) from exc
        if not isinstance(chunk, dict):
            raise ProviderError(f"provider-proxy sent a malformed stream chunk for {model}")
        if "error" in chunk:
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise ProviderError(f"provider stream failed for {model}: {str(message)[:300]}")
        state["model"] = chunk.get("model") or state["model"]
        if chunk.get("usage"):
            state["usage"] = _usage(chunk["usage"])
        choices = chunk.get("choices") or []
        if not choices or not isinstance(choices[0], dict):
            return ""
        choice = choices[0]
        if choice.get("finish_reason"):
            state["finish_reason"] = choice["finish_reason"]
        delta = choice.get("delta") or {}
        content = delta.get("content") if isinstance(delta, dict) else None
        return content if isinstance(content, str) else ""


# --- storage-adapter ------------------------------------------------------------------


class StorageUnavailable(StorageError):
    """No usable answer (unreachable, timed out, 5xx, 408/429): worth retrying."""


class StorageCircuitOpen(StorageError):
    """Refused without a request: storage-adapter has been failing (see the breaker)."""


class StorageRejected(StorageError):
    """storage-adapter answered 4xx: the request itself is wrong; retrying cannot help."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class StoredMessage:
    role: str
    content: str


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, within the operation's time budget."""

    attempts: int = 4
    base_delay_s: float = 0.1
    max_delay_s: float = 2.0


class StorageClient:
    """Conversations and messages in storage-adapter (DESIGN §5).

    Every operation has a time budget (retries included); each attempt gets what is
    left of it. Unanswered requests, 5xx, 408 and 429 are retried with backoff and
    jitter — the writes are idempotent by key, the reads harmless; any other 4xx is
    :class:`StorageRejected` at once. Every request carries ``X-EXAI-Client-ID``: the
    client whose conversation it is (storage-adapter keeps each one to its owner).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        timeout_s: float = 5.0,
        breaker: CircuitBreaker | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._http = http
        self._timeout_s = timeout_s
        self.breaker = breaker or CircuitBreaker(failures=5, reset_s=10.0, name="storage-adapter")
        self._retry = retry or RetryPolicy()

    async def history(
        self, continuation_id: str, *, client_id: str, budget_s: float
    ) -> list[StoredMessage] | None:
        """The conversation's recent messages, oldest first; None if it does not exist."""
        response = await self._send("GET", self._path(continuation_id), client_id, budget_s)
        if response.status_code == 404:
            return None
        self._check(response)
        try:
            messages = response.json()["messages"]
            return [StoredMessage(str(m["role"]), str(m["content"])) for m in messages]
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError("storage-adapter sent a malformed conversation") from exc

    async def create(self, continuation_id: str, *, client_id: str, budget_s: float) -> None:
        """Create the conversation; one this client already has is fine (200). A 409
        means the ID is another client's: :class:`StorageRejected`."""
        self._path(continuation_id)  # the same check as every other operation
        response = await self._send(
            "POST",
            "/v1/conversations",
            client_id,
            budget_s,
            body={"continuation_id": continuation_id},
        )
        self._check(response)

    async def append(
        self,
        continuation_id: str,
        role: str,
        content: str,
        idempotency_key: str,
        metadata: JSONObject | None = None,
        *,
        client_id: str,
        budget_s: float,
    ) -> None:
        """Store one message; a retry never duplicates it (the key)."""
        body = {
            "role": role,
            "content": content,
            "idempotency_key": idempotency_key,
            "metadata": metadata or {},
        }
        path = f"{self._path(continuation_id)}/messages"
        self._check(await self._send("POST", path, client_id, budget_s, body=body))

    @staticmethod
    def _path(continuation_id: str) -> str:
        # Quoting alone would let "." and ".." through (dot segments a URL resolves).
        if not is_continuation_id(continuation_id):
            raise StorageRejected("not a valid continuation_id", 422)
        return f"/v1/conversations/{quote(continuation_id, safe='')}"

    async def _send(
        self,
        method: str,
        path: str,
        client_id: str,
        budget_s: float,
        *,
        body: JSONObject | None = None,
    ) -> httpx.Response:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget_s
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._retry.attempts) | stop_before_delay(budget_s),
            wait=wait_random_exponential(
                multiplier=self._retry.base_delay_s, max=self._retry.max_delay_s
            ),
            retry=retry_if_exception_type(StorageUnavailable),
            before_sleep=_log_retry,
            reraise=True,
        )
        headers = {CLIENT_ID_HEADER: client_id}
        return await retrying(self._attempt, method, path, headers, body, deadline)

    async def _attempt(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: JSONObject | None,
        deadline: float,
    ) -> httpx.Response:
        timeout_s = min(self._timeout_s, deadline - asyncio.get_running_loop().time())
        if timeout_s <= 0:
            raise StorageError("storage-adapter: no time left for this operation")
        if not self.breaker.allow():
            raise StorageCircuitOpen("storage-adapter is failing; not called (circuit open)")
        try:
            async with asyncio.timeout(timeout_s):
                response = await self._http.request(
                    method, path, json=body, headers=headers, timeout=timeout_s
                )
        except (httpx.TransportError, TimeoutError) as exc:
            self.breaker.failed()
            raise StorageUnavailable(f"storage-adapter unreachable: {type(exc).__name__}") from exc
        except BaseException:
            self.breaker.abandoned()
            raise
        if response.status_code >= 500 or response.status_code in (408, 429):
            self.breaker.failed()
            raise StorageUnavailable(
                f"storage-adapter answered {response.status_code}: {_error_detail(response)}"
            )
        self.breaker.succeeded()
        return response

    @staticmethod
    def _check(response: httpx.Response) -> None:
        if response.status_code >= 400:
            raise StorageRejected(
                f"storage-adapter answered {response.status_code}: {_error_detail(response)}",
                response.status_code,
            )


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    reason = outcome.exception() if outcome is not None else None
    logger.info("retrying storage request (attempt %d failed: %s)", state.attempt_number, reason)
