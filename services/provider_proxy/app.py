"""`create_app()`: the provider proxy as a FastAPI app (DESIGN §4).

- `POST /v1/chat/completions` — OpenAI shape; `stream: true` answers SSE
- `GET /v1/models`, `GET /v1/models/{model}` — the models this proxy routes
- `/health/live`, `/health/ready`, `/health` — a provider whose circuit is open
  degrades the service; it never makes it unready (the other provider still works)

Errors are OpenAI error bodies (`{"error": {"message", "type", "code"}}`). The HTTP
clients live in the lifespan; the telemetry is the caller's to shut down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from exai_contracts.ids import CLIENT_ID_HEADER
from exai_telemetry.health import ComponentHealth, Probe
from exai_telemetry.http_service import (
    NATIVE_TELEMETRY_OFF,
    BodyLimit,
    add_health_routes,
    instrument_app,
)
from exai_telemetry.http_transport import AiohttpTransport, environment_proxy
from exai_telemetry.internal_auth import AuthFailure, install_internal_auth
from exai_telemetry.redaction import redact_url
from exai_telemetry.setup import Telemetry
from provider_proxy import __version__
from provider_proxy.adapters import ProviderAdapter, build_adapters, startup_note
from provider_proxy.circuit import CircuitBreaker
from provider_proxy.errors import (
    ClientDisconnected,
    InvalidRequest,
    ProxyError,
    openai_error_body,
)
from provider_proxy.limits import PAYLOAD_TOO_LARGE, too_large
from provider_proxy.retry import RetryPolicy
from provider_proxy.routing import ModelRouter
from provider_proxy.schemas import ChatCompletionRequest
from provider_proxy.service import OTHER_MODEL, ChatService, OpenedStream
from provider_proxy.settings import ProxySettings
from provider_proxy.telemetry import ClientLabels, ProxyMetrics
from provider_proxy.timing import UpstreamTimingMiddleware
from provider_proxy.types import CircuitStateName, ProviderName
from provider_proxy.upstream import ResponseLimits, Upstream
from provider_proxy.usage import PriceTable

logger = logging.getLogger(__name__)

T = TypeVar("T")
MODELS_CREATED = 1_735_689_600  # a fixed date, so the model list is stable


@dataclass
class ProxyState:
    settings: ProxySettings
    adapters: dict[ProviderName, ProviderAdapter]
    breakers: dict[ProviderName, CircuitBreaker]
    router: ModelRouter
    clients: ClientLabels
    service: ChatService | None = None

    def circuit_states(self) -> dict[ProviderName, CircuitStateName]:
        return {name: breaker.state for name, breaker in self.breakers.items()}


# Headers the W3C propagators write: trace context and baggage.
TRACE_CONTEXT_HEADERS = ("traceparent", "tracestate", "baggage")


class WithoutTraceContext(httpx.AsyncBaseTransport):
    """A transport that removes trace-context and baggage headers before sending.

    It sits *under* the httpx instrumentation, which injects the headers just before it
    calls the transport: the CLIENT span is still recorded here, with the correlation
    ID, but the third party sees neither our trace IDs nor our baggage.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for name in TRACE_CONTEXT_HEADERS:
            request.headers.pop(name, None)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _http_client(
    adapter: ProviderAdapter,
    telemetry: Telemetry,
    transport: httpx.AsyncBaseTransport | None = None,
    max_connections: int = 200,
) -> httpx.AsyncClient:
    """httpx's client API over :class:`AiohttpTransport` (or the tests' transport). The
    egress proxy (HTTP(S)_PROXY, NO_PROXY) is the transport's, so httpx mounts none."""
    timeouts = adapter.timeouts
    base_url = adapter.endpoint.base_url
    if transport is None:
        transport = AiohttpTransport(max_connections, proxy=environment_proxy(base_url))
    client = httpx.AsyncClient(
        base_url=base_url,
        headers=adapter.headers(),
        timeout=httpx.Timeout(timeouts.read_s, connect=timeouts.connect_s),
        follow_redirects=False,
        transport=transport,
        trust_env=False,
    )
    if not adapter.endpoint.propagate_context:
        # Trace context and baggage stay inside: only the llm-simulator (our service,
        # whose spans belong in the caller's trace) gets them. For a third-party API
        # both are dropped — baggage carries our correlation ID, and W3C trace context
        # to a third party is optional and useless to us (its spans never reach our
        # collector). The one transport (egress proxy included) is wrapped before the
        # instrumentation wraps it in turn.
        client._transport = WithoutTraceContext(client._transport)
    HTTPXClientInstrumentor.instrument_client(
        client, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    return client


def create_app(
    settings: ProxySettings,
    telemetry: Telemetry,
    *,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """`upstream_transport` (tests only) carries every provider request instead of the
    network, e.g. an `httpx.ASGITransport` around an llm-simulator app, so that a
    provider can have a third-party base URL without any traffic leaving the process."""
    adapters = build_adapters(settings)
    breakers = {
        name: CircuitBreaker(
            settings.circuit_failure_threshold, settings.circuit_cooldown_s, time.monotonic
        )
        for name in adapters
    }
    prices = settings.prices()
    router = ModelRouter(
        settings.model_provider_map,
        known_models=prices,
        fallbacks=settings.fallbacks(),
        fallback_models=settings.fallback_model_map,
    )
    state = ProxyState(
        settings, adapters, breakers, router, ClientLabels(secrets=telemetry.secrets)
    )
    metrics = ProxyMetrics(
        telemetry.meter("provider_proxy"),
        state.circuit_states,
        spend_budget_usd_per_hour=settings.spend_budget_usd_per_hour,
    )
    # Every series the alerts divide exists from the start, at 0.
    models = [(t.provider, t.model) for t in router.known_models()]
    models += [(name, OTHER_MODEL) for name in adapters]
    fallbacks = [(a, b) for a, b in settings.fallbacks().items() if a != b and b in adapters]
    metrics.start_at_zero(models, fallbacks)
    policy = RetryPolicy(
        settings.retry_max_attempts, settings.retry_base_delay_s, settings.retry_max_delay_s
    )
    limits = ResponseLimits(
        body_bytes=settings.max_upstream_body_bytes,
        sse_line_bytes=settings.max_sse_line_bytes,
        stream_bytes=settings.max_stream_bytes,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for adapter in adapters.values():
            note = startup_note(adapter)
            if note is not None:
                logger.info("%s", note)
        clients = {
            name: _http_client(
                adapter, telemetry, upstream_transport, settings.upstream_max_connections
            )
            for name, adapter in adapters.items()
        }
        upstreams = {
            name: Upstream(
                adapters[name],
                clients[name],
                breakers[name],
                policy,
                limits,
            )
            for name in adapters
        }
        state.service = ChatService(
            upstreams,
            router,
            PriceTable(prices),
            telemetry.tracer("provider_proxy"),
            metrics,
            capture_content=telemetry.capture_content,
        )
        try:
            yield
        finally:
            state.service = None
            for client in clients.values():
                await client.aclose()

    app = FastAPI(
        title="EXAI provider-proxy",
        version=__version__,
        lifespan=lifespan,
        telemetry=NATIVE_TELEMETRY_OFF,
    )
    app.state.proxy = state
    _add_routes(app, state)
    _add_error_handlers(app)

    def probes() -> Sequence[Probe]:
        return [_provider_probe(name, adapters[name], breakers[name]) for name in adapters]

    add_health_routes(app, probes, __version__)
    instrument_app(app, telemetry)
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes, reject=too_large)
    install_internal_auth(app, settings.provider_token, "EXAI_PROVIDER_TOKEN", reject=unauthorized)
    # Outermost: the clock covers the request however it is answered (errors included).
    app.add_middleware(UpstreamTimingMiddleware)
    return app


def unauthorized(failure: AuthFailure) -> Response:
    """The proxy's 401 for a caller without `EXAI_PROVIDER_TOKEN`, in OpenAI's shape."""
    error = {"message": failure.message, "type": "authentication_error", "code": failure.code}
    return JSONResponse({"error": {**error, "param": None}}, status_code=401)


def _provider_probe(name: str, adapter: ProviderAdapter, breaker: CircuitBreaker) -> Probe:
    async def check() -> ComponentHealth:
        state = breaker.state
        detail = {
            "circuit": state,
            "simulated": adapter.endpoint.simulated,
            "base_url": redact_url(adapter.endpoint.base_url),
        }
        return ComponentHealth(state != "open", required=False, detail=detail)

    return Probe(name, check, required=False)


def _add_routes(app: FastAPI, state: ProxyState) -> None:
    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request, body: ChatCompletionRequest) -> Response:
        service = state.service
        if service is None:  # only between shutdown and the last request
            raise ProxyError("the proxy is shutting down")
        client = state.clients.label(request.headers.get(CLIENT_ID_HEADER))
        if body.stream:
            opened = await until_disconnected(
                request, service.open_stream(body.upstream_body(), client)
            )
            return RelayResponse(opened)
        completion = await until_disconnected(
            request, service.complete(body.upstream_body(), client)
        )
        return JSONResponse(completion)

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [_model_entry(t.model, t.provider) for t in state.router.known_models()],
        }

    @app.get("/v1/models/{model}")
    async def get_model(model: str) -> dict[str, Any]:
        for target in state.router.known_models():
            if target.model == model:
                return _model_entry(target.model, target.provider)
        raise StarletteHTTPException(404, f"model {model!r} is not served by this proxy")


class RelayResponse(StreamingResponse):
    """SSE relay of an upstream stream that closes it however the response ends."""

    def __init__(self, opened: OpenedStream) -> None:
        super().__init__(
            opened.events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._opened = opened

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._opened.abandon()


def _model_entry(model: str, provider: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": MODELS_CREATED, "owned_by": provider}


async def until_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Run `work` unless the client disconnects first; then cancel it (which aborts the
    upstream request) and raise :class:`ClientDisconnected`.

    Starlette cancels a *streaming* response when its client leaves; this does the
    same for the time before a response exists.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise ClientDisconnected()
    return task.result()


async def _disconnect(request: Request) -> None:
    # The body has been read: the next ASGI message is the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _add_error_handlers(app: FastAPI) -> None:
    async def proxy_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProxyError)
        if isinstance(exc, ClientDisconnected):
            logger.info("client disconnected; upstream request aborted")
        elif exc.client_status >= 500:
            logger.warning("chat completion failed: %s (%s)", exc, exc.error_type)
        return JSONResponse(openai_error_body(exc), status_code=exc.client_status)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "body"
        # The input is not echoed: it may be prompt text.
        error = InvalidRequest(f"invalid request: {where}: {first.get('msg', 'invalid')}")
        return JSONResponse(openai_error_body(error), status_code=400)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        error = ProxyError(str(exc.detail))
        body = openai_error_body(error)
        body["error"]["type"] = "invalid_request_error" if exc.status_code < 500 else "server_error"
        codes = {404: "not_found", PAYLOAD_TOO_LARGE: "payload_too_large"}
        body["error"]["code"] = codes.get(exc.status_code, str(exc.status_code))
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unexpected error")
        return JSONResponse(openai_error_body(ProxyError("internal error")), status_code=500)

    app.add_exception_handler(ProxyError, proxy_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
