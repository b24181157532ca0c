"""What every FastAPI-based service shares: health routes, instrumentation, serving.

Correlation: the HTTP server span is started by the ASGI instrumentation from the
incoming `traceparent` + `baggage`. Callers that send only `X-Correlation-ID` still get
it on their spans: :class:`CorrelationMiddleware` puts the header (or a new ID) into
baggage and echoes the ID back, with the server span's `traceparent`.
"""

from __future__ import annotations

import logging
import math
import signal
from collections.abc import Callable, Sequence
from typing import TypeVar

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from opentelemetry import context, trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exai_telemetry.correlation import (
    CORRELATION_ATTRIBUTE,
    CORRELATION_HEADER,
    current_correlation_id,
    new_correlation_id,
    normalize_correlation_id,
    with_correlation_id,
)
from exai_telemetry.health import HealthCache, Probe
from exai_telemetry.settings import ServiceSettings, load_settings
from exai_telemetry.setup import Telemetry, setup_telemetry

S = TypeVar("S", bound=ServiceSettings)

logger = logging.getLogger(__name__)

# Only `traceparent` goes back to callers (baggage stays internal).
_TRACE_CONTEXT = TraceContextTextMapPropagator()

# Regexes searched in the full request URL (scheme://host/path): anchored so that a
# conversation called "healthcare-1" is still traced.
HEALTH_PATHS = r"^[a-z]+://[^/]+/health(/live|/ready)?/?$"

# FastAPI (0.165+) has telemetry of its own, on whenever a global provider is set. Ours
# comes from opentelemetry-instrumentation-fastapi (`instrument_app`), whose span names
# and attributes the dashboards and tests rely on; FastAPI's would wrap every request a
# second time for nothing (it stands down beside the instrumentation, but still costs).
NATIVE_TELEMETRY_OFF: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}

# What uvicorn handles: each starts a graceful shutdown.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def add_health_routes(
    app: FastAPI,
    probes: Callable[[], Sequence[Probe]],
    version: str,
    *,
    cache_ttl_s: float = 0.0,
    details: bool = True,
) -> None:
    """`probes` is called per evaluation so that it sees clients built in the lifespan.
    Concurrent requests share one evaluation (:class:`HealthCache`), reused for
    `cache_ttl_s`; `details=False` renders statuses only (a public port)."""
    cache = HealthCache(probes, version, cache_ttl_s)

    @app.get("/health/live", include_in_schema=False)
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/health/ready", include_in_schema=False)
    async def ready() -> JSONResponse:
        report = await cache.report()
        return JSONResponse(report.as_json(details), status_code=200 if report.ready else 503)

    @app.get("/health", include_in_schema=False)
    async def health() -> JSONResponse:
        report = await cache.report()
        return JSONResponse(report.as_json(details))


class CorrelationMiddleware:
    """Header → baggage when baggage lacks it (a new UUID4 when the request brought
    neither); the ID and the server span's `traceparent` go back on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = None
        correlation_id = current_correlation_id()
        if correlation_id is None:
            header = _header(scope, CORRELATION_HEADER.lower().encode())
            # A caller that sent none (or an unusable one) still gets an ID to quote.
            correlation_id = normalize_correlation_id(header) or new_correlation_id()
            token = context.attach(with_correlation_id(correlation_id))
            span = trace.get_current_span()
            if span.is_recording():
                span.set_attribute(CORRELATION_ATTRIBUTE, correlation_id)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if correlation_id:
                    headers.append((CORRELATION_HEADER.encode(), correlation_id.encode()))
                carrier: dict[str, str] = {}
                _TRACE_CONTEXT.inject(carrier)
                if "traceparent" in carrier:
                    headers.append((b"traceparent", carrier["traceparent"].encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            if token is not None:
                context.detach(token)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def instrument_app(app: FastAPI, telemetry: Telemetry) -> None:
    """ASGI server spans + `http.server.request.duration`; health probes excluded."""
    app.add_middleware(CorrelationMiddleware)
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        excluded_urls=HEALTH_PATHS,
        exclude_spans=["receive", "send"],
    )


class BodyLimit:
    """413 for request bodies over `max_bytes`, whether declared in `Content-Length` or
    streamed in chunks. `reject(max_bytes)` builds the response in the service's own
    error shape; a streamed overflow raises an `HTTPException(413)` that the service's
    exception handlers render the same way."""

    def __init__(self, app: ASGIApp, max_bytes: int, reject: Callable[[int], Response]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.reject = reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self.reject(self.max_bytes)(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI lets an HTTPException from body parsing through unchanged.
                    raise StarletteHTTPException(413, f"request body over {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)


def serve(app: FastAPI, settings: ServiceSettings, port: int) -> None:
    """Run until SIGINT/SIGTERM; uvicorn stops accepting, lets in-flight requests
    (streams included) finish for up to `EXAI_SHUTDOWN_GRACE_S`, then runs the app's
    lifespan shutdown; this returns, and the caller flushes telemetry."""
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=port,
        log_config=None,
        access_log=False,
        # Rounded up: a fractional grace must never become 0 (no drain at all).
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),
        lifespan="on",
    )
    server = uvicorn.Server(config)
    # Once drained, uvicorn raises the signal again for the handler installed before
    # it. The default handler would kill the process there (-SIGTERM), before the
    # caller's telemetry flush; uvicorn's own handler, installed here first, only asks
    # an already stopped server to stop, so `run()` returns and the process exits 0.
    # It also covers a signal that arrives before uvicorn installs its handlers.
    previous = {signum: signal.signal(signum, server.handle_exit) for signum in STOP_SIGNALS}
    try:
        server.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_service(
    service_name: str,
    version: str,
    settings_cls: type[S],
    create_app: Callable[[S, Telemetry], FastAPI],
    port: Callable[[S], int],
) -> None:
    """`python -m <service>`: validated settings, telemetry, serve until SIGTERM."""
    settings = load_settings(settings_cls)
    telemetry = setup_telemetry(service_name, version, settings)
    try:
        serve(create_app(settings, telemetry), settings, port(settings))
    finally:
        # After uvicorn has drained in-flight requests: flush what they recorded
        # (bounded by EXAI_TELEMETRY_FLUSH_S).
        telemetry.shutdown()
