"""Clients for the end-to-end tests: the gateway (native WS protocol), Jaeger's query
API, Prometheus' HTTP API, the simulator's admin API and an Alertmanager webhook."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx
from websockets.asyncio.client import ClientConnection, connect

GATEWAY = "ws://127.0.0.1:8079"
PROXY = "http://127.0.0.1:8090"
SIMULATOR = "http://127.0.0.1:8099"
JAEGER = "http://127.0.0.1:16686"
PROMETHEUS = "http://127.0.0.1:9090"
ALERTMANAGER = "http://127.0.0.1:9093"

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], timeout_s: float, every_s: float = 1.0) -> T:
    """The first truthy result of `probe`, polling until `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every_s)
    raise AssertionError(f"condition not met within {timeout_s}s (last: {last!r})")


def settled(read: Callable[[], T], *, quiet_s: float, timeout_s: float) -> T:
    """`read()` once its value has not changed for `quiet_s`: the e2e modules share one
    stack, and earlier calls may still be on their way through the collector (span-metric
    flush, metric export, batching)."""
    deadline = time.monotonic() + timeout_s
    last = read()
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(2)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return now
    raise AssertionError(f"still changing after {timeout_s}s: {last!r}")


@dataclass
class CallResult:
    correlation_id: str
    frame: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.frame.get("op") == "call_tool_res"


class GatewaySession:
    """One authenticated native-protocol connection."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, token: str, url: str = GATEWAY) -> Any:
        async with connect(url, max_size=8 * 1024 * 1024) as ws:
            await ws.send(json.dumps({"op": "hello", "token": token}))
            ack = json.loads(await ws.recv())
            assert ack["op"] == "hello_ack" and ack["ok"], ack
            yield cls(ws)

    async def call(
        self, tool: str, arguments: dict[str, Any], correlation_id: str | None = None
    ) -> CallResult:
        correlation_id = correlation_id or f"e2e-{uuid.uuid4()}"
        request_id = uuid.uuid4().hex
        await self.ws.send(
            json.dumps(
                {
                    "op": "call_tool",
                    "request_id": request_id,
                    "name": tool,
                    "arguments": arguments,
                    "correlation_id": correlation_id,
                }
            )
        )
        while True:
            frame = json.loads(await self.ws.recv())
            if frame.get("request_id") != request_id:
                continue
            if frame["op"] in ("call_tool_res", "error"):
                return CallResult(correlation_id, frame)


class Jaeger:
    def __init__(self, url: str = JAEGER) -> None:
        self.http = httpx.Client(base_url=url, timeout=10)

    def traces_by_correlation_id(
        self, correlation_id: str, service: str = "ws-gateway"
    ) -> list[dict[str, Any]]:
        response = self.http.get(
            "/api/traces",
            params={
                "service": service,
                "tags": json.dumps({"exai.correlation_id": correlation_id}),
                "lookback": "1h",
                "limit": 20,
            },
        )
        response.raise_for_status()
        return list(response.json().get("data") or [])

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        response = self.http.get(f"/api/traces/{trace_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        data = response.json().get("data") or []
        return data[0] if data else None

    def all_traces(self, service: str) -> list[dict[str, Any]]:
        response = self.http.get(
            "/api/traces", params={"service": service, "lookback": "2h", "limit": 5000}
        )
        response.raise_for_status()
        return list(response.json().get("data") or [])

    def services(self) -> list[str]:
        return list(self.http.get("/api/services").json().get("data") or [])


def span_services(trace: dict[str, Any]) -> dict[str, str]:
    """spanID → service.name."""
    processes = {pid: p["serviceName"] for pid, p in trace["processes"].items()}
    return {span["spanID"]: processes[span["processID"]] for span in trace["spans"]}


def span_tags(span: dict[str, Any]) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in span.get("tags", [])}


def parent_of(span: dict[str, Any]) -> str | None:
    for ref in span.get("references", []):
        if ref.get("refType") == "CHILD_OF":
            return str(ref["spanID"])
    return None


class Prometheus:
    def __init__(self, url: str = PROMETHEUS) -> None:
        self.http = httpx.Client(base_url=url, timeout=10)

    def query(self, promql: str) -> list[dict[str, Any]]:
        response = self.http.get("/api/v1/query", params={"query": promql})
        response.raise_for_status()
        return list(response.json()["data"]["result"])

    def scalar(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def exemplars(self, promql: str) -> list[dict[str, Any]]:
        now = time.time()
        response = self.http.get(
            "/api/v1/query_exemplars",
            params={"query": promql, "start": now - 3600, "end": now},
        )
        response.raise_for_status()
        return list(response.json()["data"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.http.get("/api/v1/alerts").json()["data"]["alerts"])


class Simulator:
    """The simulator's admin API, with its token (EXAI_SIMULATOR_ADMIN_TOKEN)."""

    def __init__(self, admin_token: str, url: str = SIMULATOR) -> None:
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=10
        )

    def set_fault(
        self,
        mode: str,
        rate: float = 1.0,
        provider: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        body: dict[str, Any] = {"mode": mode, "rate": rate}
        if provider:
            body["provider"] = provider
        if retry_after_s is not None:
            body["retry_after_s"] = retry_after_s
        self.http.post("/admin/faults", json=body).raise_for_status()

    def clear_faults(self) -> None:
        self.http.post("/admin/faults", json={"mode": "none"}).raise_for_status()


@dataclass
class AlertWebhook:
    """Collects Alertmanager webhook deliveries, with the time each arrived."""

    deliveries: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    @contextlib.contextmanager
    def serve(cls, host: str, port: int) -> Iterator[AlertWebhook]:
        hook = cls()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                payload = json.loads(self.rfile.read(length) or b"{}")
                with hook.lock:
                    hook.deliveries.append((time.monotonic(), payload))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        server = ThreadingHTTPServer((host, port), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield hook
        finally:
            server.shutdown()
            server.server_close()

    def alerts(
        self, status: str, since: float, names: set[str]
    ) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            found = []
            for arrived, payload in self.deliveries:
                if arrived < since:
                    continue
                for alert in payload.get("alerts", []):
                    if alert.get("status") == status and alert["labels"].get("alertname") in names:
                        found.append((arrived, alert))
            return found


def drive_provider_traffic(
    stop: threading.Event, outcomes: Counter[str], provider_token: str, proxy_url: str = PROXY
) -> None:
    """One OpenAI-style chat completion every 0.25 s against provider-proxy until `stop`,
    counting the status codes (an alert test's steady traffic)."""
    headers = {"Authorization": f"Bearer {provider_token}"}
    with httpx.Client(base_url=proxy_url, headers=headers, timeout=10) as http:
        while not stop.is_set():
            response = http.post(
                "/v1/chat/completions",
                json={
                    "model": "kimi-k2-0905-preview",
                    "messages": [{"role": "user", "content": "ping"}],
                },
            )
            outcomes[str(response.status_code)] += 1
            stop.wait(0.25)
