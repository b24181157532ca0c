"""Outbound HTTP for every service: httpx's API on aiohttp's connection pool.

Used by the provider-proxy (to the providers) and the ws-gateway (to the provider-proxy
and the storage-adapter). Under load the provider-proxy spent most of its CPU in
httpcore's pool: every request scans every pooled connection, and each check costs a
`getpeername` and a `select` call (measured with py-spy in `make bench-peers`,
docs/benchmarks.md). aiohttp keeps idle connections in a per-host queue instead (LiteLLM
made the same move). The callers keep speaking httpx — requests, streaming responses,
its exception types and the OpenTelemetry httpx instrumentation, which wraps this
transport as it wrapped httpcore's.

:class:`AiohttpTransport` maps aiohttp's failures onto httpx's exceptions, the ones
`provider_proxy.upstream.translate` and `ws_gateway.clients` know, so the outcomes stay
what they were:

- waiting longer than the `pool` timeout for a free slot → `httpx.PoolTimeout` (a full
  pool is ours, not the provider's): the slots are this transport's own semaphore, so
  aiohttp never queues a request itself;
- connecting → `ConnectTimeout` / `ConnectError`; silence between bytes past `read` →
  `ReadTimeout`; a dropped or garbled answer → `RemoteProtocolError` / `ReadError`.

A slot is held from the request until its response is closed (a stream holds it while it
streams), as an httpcore connection was. httpx's `write` timeout has no aiohttp
equivalent; request bodies here are small JSON documents, bounded by the `read` timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import aiohttp
import httpx
from aiohttp.helpers import BasicAuth, get_env_proxy_for_url
from yarl import URL

# httpx's keep-alive expiry, kept for parity.
KEEPALIVE_S = 5.0
LARGE_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class EgressProxy:
    url: str
    auth: BasicAuth | None = None


def environment_proxy(base_url: str) -> EgressProxy | None:
    """The egress proxy HTTP(S)_PROXY names for `base_url`, unless NO_PROXY exempts its
    host (aiohttp's own reading of the environment, done once instead of per request)."""
    try:
        url, auth = get_env_proxy_for_url(URL(base_url))
    except LookupError:
        return None
    return EgressProxy(str(url), auth)


@contextlib.contextmanager
def httpx_errors(request: httpx.Request) -> Iterator[None]:
    """aiohttp's exceptions as the httpx ones that mean the same."""
    try:
        yield
    except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError) as exc:
        kind: type[httpx.TransportError] = (
            httpx.ConnectTimeout
            if isinstance(exc, aiohttp.ConnectionTimeoutError)
            else httpx.ConnectError
        )
        raise kind(str(exc) or type(exc).__name__, request=request) from exc
    except aiohttp.SocketTimeoutError as exc:
        raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
        raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__, request=request) from exc
    except aiohttp.ClientResponseError as exc:  # a malformed status line or header
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except TimeoutError as exc:  # aiohttp's ceil_timeout, outside its own types
        raise httpx.ReadTimeout("timed out", request=request) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc


class _ResponseStream(httpx.AsyncByteStream):
    """The body of one aiohttp response; closing it frees the connection and the slot."""

    def __init__(
        self, response: aiohttp.ClientResponse, request: httpx.Request, release: Callable[[], None]
    ) -> None:
        self._response = response
        self._request = request
        self._release = release
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with httpx_errors(self._request):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            # A body read to its end goes back to the pool; a partly read one is closed.
            self._response.release()
        finally:
            self._release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport over one `aiohttp.ClientSession`, at most `max_connections`
    requests at a time (the rest wait up to their `pool` timeout)."""

    def __init__(self, max_connections: int, *, proxy: EgressProxy | None = None) -> None:
        """`proxy`: the egress proxy for every request (:func:`environment_proxy`)."""
        self._slots = asyncio.Semaphore(max_connections)
        self._proxy = proxy
        connector = aiohttp.TCPConnector(
            limit=max_connections,
            limit_per_host=0,
            keepalive_timeout=KEEPALIVE_S,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # Not trust_env: it reads ~/.netrc in a thread on every request (seen in the
            # profile). The proxy comes from the environment once, at start-up.
            trust_env=False,
            auto_decompress=False,  # httpx decodes Content-Encoding itself
            skip_auto_headers=("User-Agent", "Accept-Encoding"),  # httpx sets its own
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        if self._slots.locked():  # only a full pool pays for the timer
            try:
                async with asyncio.timeout(timeouts.get("pool")):
                    await self._slots.acquire()
            except TimeoutError:
                raise httpx.PoolTimeout("no free upstream connection", request=request) from None
        else:
            await self._slots.acquire()
        try:
            body = await request.aread()
            with httpx_errors(request):
                response = await self._session.request(
                    request.method,
                    str(request.url),
                    headers=list(request.headers.multi_items()),
                    # aiohttp sends bytes over 1 MiB in one write (and warns); a buffer
                    # goes in chunks.
                    data=(body if len(body) <= LARGE_BODY_BYTES else io.BytesIO(body)) or None,
                    allow_redirects=False,
                    proxy=None if self._proxy is None else self._proxy.url,
                    proxy_auth=None if self._proxy is None else self._proxy.auth,
                    timeout=aiohttp.ClientTimeout(
                        total=None,
                        connect=None,
                        sock_connect=timeouts.get("connect"),
                        sock_read=timeouts.get("read"),
                    ),
                    server_hostname=request.extensions.get("sni_hostname"),
                )
        except BaseException:
            self._slots.release()
            raise
        return httpx.Response(
            response.status,
            headers=[(k, v) for k, v in response.raw_headers],
            stream=_ResponseStream(response, request, self._slots.release),
            extensions={
                "http_version": _http_version(response),
                "reason_phrase": (response.reason or "").encode(),
            },
        )

    async def aclose(self) -> None:
        await self._session.close()


def _http_version(response: aiohttp.ClientResponse) -> bytes:
    version = response.version
    return b"HTTP/1.1" if version is None else f"HTTP/{version.major}.{version.minor}".encode()
