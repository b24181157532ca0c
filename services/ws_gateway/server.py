"""The asyncio server: one port for the native protocol, MCP and HTTP health.

Routing happens during the opening handshake (``process_request``):

- ``GET /health/live|ready`` and ``GET /health`` are answered as plain HTTP (JSON);
- an upgrade offering subprotocol ``mcp`` must carry the token (``Authorization:
  Bearer`` or ``?token=``) or is refused with HTTP 401, which the MCP SDK's client
  surfaces as ``InvalidStatus: ... HTTP 401``;
- everything else is upgraded; a subprotocol we do not speak is closed with 4001,
  a connection over the limit with 1008, and the native protocol authenticates in
  its ``hello`` frame.

Readiness depends only on what calls need: provider-proxy is *required* (no tool works
without it); storage-adapter is optional — without it chats are answered without
memory (and say so in their result), so the gateway is ``degraded``, not unready.
Probes are shared and cached for EXAI_HEALTH_CACHE_S, and the HTTP answers on this
public port carry statuses only; the details (error, latency, HTTP status) are in the
authenticated ``status`` tool.

The request target may carry the MCP token in its query string: only
:func:`redact_path` versions of it are ever logged or put on spans.

Limits before authentication (issue 8): a native socket counts as *unauthenticated*
until its hello is accepted, and at most EXAI_MAX_UNAUTHENTICATED of those are open at
once (more are closed with 1008), so they cannot take the places of authenticated ones;
until then its frames may be at most EXAI_MAX_HELLO_FRAME_BYTES (websockets closes with
1009 before buffering more). An MCP socket is authenticated at the upgrade, so it gets
EXAI_MAX_FRAME_BYTES from its first frame. Every connection buffers at most
EXAI_WS_MAX_QUEUE incoming frames and is paced by a token bucket (EXAI_WS_RATE_PER_S,
EXAI_WS_RATE_BURST). A client sending a large frame right behind its hello, before
``hello_ack``, may still meet the hello limit: wait for ``hello_ack``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
import weakref
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from exai_telemetry.correlation import CORRELATION_HEADER
from exai_telemetry.health import CHECK_TIMEOUT_S, ComponentHealth, HealthCache, Probe
from exai_telemetry.redaction import redact_path
from exai_telemetry.settings import fail
from exai_telemetry.setup import Telemetry
from ws_gateway import __version__, mcp_protocol, protocol
from ws_gateway.breaker import CircuitBreaker
from ws_gateway.calls import CallRunner
from ws_gateway.clients import ProviderClient, StorageClient, build_http_client
from ws_gateway.connections import McpConnection, NativeConnection
from ws_gateway.limits import ConnectionLimiter, InflightLimiter, TokenBucket
from ws_gateway.mcp_protocol import McpProtocol
from ws_gateway.protocol import CloseCode, NativeProtocol
from ws_gateway.settings import GatewaySettings
from ws_gateway.telemetry import GatewayTelemetry, LatencyObjectives
from ws_gateway.tools import Toolbox
from ws_gateway.types import JSONObject, ProtocolName

logger = logging.getLogger(__name__)

SERVICE_NAME = "ws-gateway"
HEALTH_ROUTES = frozenset({"/health", "/health/live", "/health/ready"})
SUBPROTOCOLS = (protocol.SUBPROTOCOL, mcp_protocol.SUBPROTOCOL)
CLOSE_TIMEOUT_S = 5.0


def offered_subprotocols(headers: Headers) -> list[str]:
    return [
        part.strip()
        for value in headers.get_all("Sec-WebSocket-Protocol")
        for part in value.split(",")
        if part.strip()
    ]


def choose_subprotocol(offered: list[str]) -> str | None:
    """The client's first choice among those we speak; None means native or unknown."""
    return next((p for p in offered if p in SUBPROTOCOLS), None)


def request_token(request: Request) -> str | None:
    authorization = request.headers.get("Authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    tokens = parse_qs(urlsplit(request.path).query).get("token")
    return tokens[0] if tokens else None


def printable_path(path: str) -> str:
    """The request target as text: websockets decodes raw non-ASCII bytes to lone
    surrogates, which no log line, span or UTF-8 encoder takes."""
    return path.encode("ascii", "surrogateescape").decode("utf-8", "replace")


def json_response(connection: ServerConnection, status: int, body: JSONObject) -> Response:
    response = connection.respond(status, json.dumps(body) + "\n")
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    response.headers["Cache-Control"] = "no-store"
    return response


class Gateway:
    """The running gateway; ``async with create_gateway(...) as gw`` in tests."""

    def __init__(self, settings: GatewaySettings, telemetry: Telemetry) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.metrics = GatewayTelemetry(telemetry, LatencyObjectives.of(settings))
        self.limiter = InflightLimiter(
            per_session=settings.max_inflight_per_session, global_max=settings.max_inflight_global
        )
        self.connections = ConnectionLimiter(settings.max_connections, settings.max_unauthenticated)
        self.accepting = True
        self._tokens = settings.client_tokens()
        # MCP upgrades authenticated in process_request: connection → client id.
        self._mcp_clients: weakref.WeakKeyDictionary[ServerConnection, str] = (
            weakref.WeakKeyDictionary()
        )
        self._tool_specs = Toolbox.specs()
        self._started_at = time.monotonic()
        self._server: Server | None = None
        # Built in start(), closed in stop().
        self._clients: list[httpx.AsyncClient] = []
        self._probe_http: httpx.AsyncClient
        self._runner: CallRunner | None = None
        self._toolbox: Toolbox | None = None
        self._health = HealthCache(self.probes, __version__, settings.health_cache_s)

    # --- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        settings = self.settings
        # The proxy's own deadline should fire first; this is only a backstop.
        provider_http = build_http_client(
            settings.provider_url,
            settings.call_timeout_s + 5,
            self.telemetry,
            settings.provider_token,
        )
        storage_http = build_http_client(
            settings.storage_url,
            settings.storage_timeout_s,
            self.telemetry,
            settings.storage_token,
        )
        # Health probes run every few seconds: uninstrumented, or they would flood the
        # trace store with one root span each.
        self._probe_http = httpx.AsyncClient(timeout=CHECK_TIMEOUT_S, trust_env=False)
        self._clients = [provider_http, storage_http, self._probe_http]
        storage = StorageClient(
            storage_http,
            timeout_s=settings.storage_timeout_s,
            breaker=CircuitBreaker(
                settings.storage_breaker_failures,
                settings.storage_breaker_reset_s,
                name="storage-adapter",
            ),
        )
        toolbox = Toolbox(settings, ProviderClient(provider_http), storage, self.status)
        self._toolbox = toolbox
        self._runner = CallRunner(
            toolbox,
            self.limiter,
            self.metrics,
            call_timeout_s=settings.call_timeout_s,
            accepting=lambda: self.accepting,
        )
        ws_logger = logging.getLogger("ws_gateway.websockets")
        # websockets logs every health probe at INFO, and at DEBUG every header and
        # frame (tokens, prompts). Our own connection logs say what matters.
        ws_logger.setLevel(logging.WARNING)
        self._server = await serve(
            self._handle,
            settings.host,
            settings.port,
            process_request=self._process_request,
            select_subprotocol=self._select_subprotocol,
            # Until a socket authenticates; raised to EXAI_MAX_FRAME_BYTES once it has.
            max_size=self._hello_frame_bytes,
            max_queue=settings.ws_max_queue,
            ping_interval=settings.ping_interval_s,
            ping_timeout=settings.ping_interval_s,
            close_timeout=CLOSE_TIMEOUT_S,
            server_header=f"exai-ws-gateway/{__version__}",
            logger=ws_logger,
        )
        logger.info("ws-gateway listening on %s", self.url)

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop accepting, let calls finish for up to the grace period, close with 1001."""
        server = self._server
        if server is None:
            return
        self._server = None
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        grace_ends = asyncio.get_running_loop().time() + grace
        self.accepting = False
        server.server.close()  # no new TCP connections; open ones carry on
        try:
            async with asyncio.timeout(grace):
                await self.limiter.wait_idle()
        except TimeoutError:
            logger.warning("grace period over; cancelling %d calls", self.limiter.global_inflight)
        server.close()  # 1001 to every open connection; their calls are cancelled
        await server.wait_closed()
        if self._toolbox is not None:  # answered exchanges still being stored
            await self._toolbox.memory.drain(grace_ends - asyncio.get_running_loop().time())
        await asyncio.gather(*(client.aclose() for client in self._clients))
        logger.info("ws-gateway stopped")

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def _hello_frame_bytes(self) -> int:
        return min(self.settings.max_hello_frame_bytes, self.settings.max_frame_bytes)

    def _rate_limit(self) -> TokenBucket:
        return TokenBucket(self.settings.ws_rate_per_s, self.settings.ws_rate_burst)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("gateway is not running")
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        return f"ws://{self.settings.host}:{self.port}"

    # --- health and status --------------------------------------------------------

    def probes(self) -> list[Probe]:
        return [
            Probe("provider-proxy", lambda: self._check(self.settings.provider_url), True),
            # Chats are answered without it (no memory): down degrades, never unready.
            Probe("storage-adapter", lambda: self._check(self.settings.storage_url), False),
        ]

    async def _check(self, base_url: str) -> ComponentHealth:
        response = await self._probe_http.get(f"{base_url.rstrip('/')}/health/ready")
        return ComponentHealth(
            response.status_code == 200, detail={"http_status": response.status_code}
        )

    async def status(self, session_id: str) -> JSONObject:
        report = await self._health.report()
        return {
            "status": report.status,
            "version": __version__,
            "uptime_s": round(time.monotonic() - self._started_at, 1),
            "accepting_calls": self.accepting,
            "connections": {"open": self.connections.open, "max": self.connections.max_connections},
            "inflight": {
                "global": self.limiter.global_inflight,
                "global_max": self.limiter.global_max,
                "session": self.limiter.session_inflight(session_id),
                "session_max": self.limiter.per_session,
            },
            "dependencies": {name: c.as_json() for name, c in report.components.items()},
            "memory": self._toolbox.memory.status() if self._toolbox else {},
        }

    async def _health_response(self, connection: ServerConnection, route: str) -> Response:
        if route == "/health/live":
            return json_response(connection, HTTPStatus.OK, {"status": "alive"})
        report = await self._health.report()
        # A public port: statuses only, no error text or addresses.
        body = report.as_json(details=False)
        body["components"]["ws-gateway"] = {"status": "up", "required": True}
        if route == "/health/ready" and not report.ready:
            return json_response(connection, HTTPStatus.SERVICE_UNAVAILABLE, body)
        return json_response(connection, HTTPStatus.OK, body)

    # --- handshake ----------------------------------------------------------------

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        route = request.path.partition("?")[0]
        if route in HEALTH_ROUTES:
            return await self._health_response(connection, route)
        if choose_subprotocol(offered_subprotocols(request.headers)) == mcp_protocol.SUBPROTOCOL:
            client_id = self._tokens.client_for(request_token(request))
            if client_id is None:
                logger.warning(
                    "MCP upgrade refused: bad or missing token (%s)",
                    redact_path(printable_path(request.path)),
                )
                response = connection.respond(HTTPStatus.UNAUTHORIZED, "unauthorized\n")
                response.headers["WWW-Authenticate"] = 'Bearer realm="exai"'
                return response
            self._mcp_clients[connection] = client_id
            # Authenticated before any frame can arrive: no pre-hello limit to lift later.
            connection.protocol.max_size = self.settings.max_frame_bytes
        return None

    @staticmethod
    def _select_subprotocol(connection: ServerConnection, subprotocols: Any) -> Subprotocol | None:
        chosen = choose_subprotocol(list(subprotocols))
        return Subprotocol(chosen) if chosen else None

    # --- connections --------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None and self._runner is not None
        target = redact_path(printable_path(ws.request.path))
        route = target.partition("?")[0]
        if offered_subprotocols(ws.request.headers) and ws.subprotocol is None:
            logger.info("closing connection: unknown subprotocol (%s)", target)
            await ws.close(CloseCode.UNKNOWN_PROTOCOL, "unknown subprotocol")
            return
        kind: ProtocolName = "mcp" if ws.subprotocol == mcp_protocol.SUBPROTOCOL else "native"
        mcp_client = self._mcp_clients.pop(ws, None)
        if kind == "mcp" and mcp_client is None:  # cannot happen: process_request checked
            await ws.close(CloseCode.UNAUTHORIZED, "unauthorized")
            return
        with self.connections.admit(authenticated=kind == "mcp") as place:
            if place is None:
                limits = self.connections
                logger.warning(
                    "closing connection: over the limit of %d connections (%d unauthenticated)",
                    limits.max_connections,
                    limits.max_unauthenticated,
                )
                await ws.close(CloseCode.OVER_CONNECTION_LIMIT, "over connection limit")
                return
            header_correlation_id = ws.request.headers.get(CORRELATION_HEADER)
            logger.info("%s connection open (%s)", kind, target)
            with self.metrics.connection(kind):
                if kind == "mcp":
                    mcp = McpProtocol(
                        self._tool_specs,
                        server_version=__version__,
                        header_correlation_id=header_correlation_id,
                        rate_limit=self._rate_limit(),
                    )
                    assert mcp_client is not None
                    with self.metrics.mcp_session(lambda: mcp.protocol_version) as session:
                        await McpConnection(
                            ws, self._runner, mcp, route=route, client_id=mcp_client
                        ).run()
                        await ws.wait_closed()  # the close code is known once closed
                        session.closed_with(ws.close_code)
                else:
                    native = NativeProtocol(
                        self._tokens,
                        self._tool_specs,
                        max_frame_bytes=self.settings.max_frame_bytes,
                        rate_limit=self._rate_limit(),
                        header_correlation_id=header_correlation_id,
                    )

                    def authenticated() -> None:
                        place.authenticate()
                        ws.protocol.max_size = self.settings.max_frame_bytes

                    await NativeConnection(
                        ws,
                        self._runner,
                        native,
                        route=route,
                        hello_timeout_s=self.settings.hello_timeout_s,
                        on_authenticated=authenticated,
                    ).run()
            logger.info("%s connection closed (%s)", kind, ws.close_code)


def create_gateway(settings: GatewaySettings, telemetry: Telemetry) -> Gateway:
    return Gateway(settings, telemetry)


async def serve_gateway(settings: GatewaySettings, telemetry: Telemetry) -> None:
    """Run until SIGTERM/SIGINT, then drain (EXAI_SHUTDOWN_GRACE_S) and flush telemetry."""
    gateway = create_gateway(settings, telemetry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await gateway.start()
    except OSError as exc:  # the port is taken, or the address is not ours
        telemetry.shutdown()
        fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}")
    try:
        await stop.wait()
        logger.info("shutting down; draining calls for up to %gs", settings.shutdown_grace_s)
    finally:
        await gateway.stop()
        telemetry.shutdown()
