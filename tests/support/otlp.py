"""A real OTLP/HTTP receiver for tests of what a service process exports.

:class:`OtlpReceiver` is an HTTP server on loopback that accepts `POST /v1/traces`,
`/v1/metrics` and `/v1/logs` the way the collector's `otlphttp` receiver does
(protobuf bodies, gzip or not), decodes them with opentelemetry-proto and keeps every
export with the time it arrived. :class:`BlackHole` is a collector that never answers:
it completes TCP handshakes (the kernel does, from the listen backlog) and reads
nothing, so an exporter waits for its own timeout.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

Signal = Literal["traces", "metrics", "logs"]

_REQUESTS: dict[str, tuple[Signal, type[Message], type[Message]]] = {
    "/v1/traces": ("traces", ExportTraceServiceRequest, ExportTraceServiceResponse),
    "/v1/metrics": ("metrics", ExportMetricsServiceRequest, ExportMetricsServiceResponse),
    "/v1/logs": ("logs", ExportLogsServiceRequest, ExportLogsServiceResponse),
}


@dataclass(frozen=True)
class Export:
    signal: Signal
    received_at: float  # time.monotonic()
    request: Any  # the decoded Export*ServiceRequest


def attributes(pairs: Iterator[KeyValue] | Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class OtlpReceiver:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._exports: list[Export] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                route = _REQUESTS.get(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if route is None:
                    self.send_error(404)
                    return
                signal, request_type, response_type = route
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = request_type()
                request.ParseFromString(body)
                receiver._add(Export(signal, time.monotonic(), request))
                payload = response_type().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test's output stays readable

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _add(self, export: Export) -> None:
        with self._lock:
            self._exports.append(export)

    def exports(self, signal: Signal) -> list[Export]:
        with self._lock:
            return [e for e in self._exports if e.signal == signal]

    def spans(self, service_name: str) -> list[tuple[float, Span]]:
        """(arrival time, span) for every span `service_name` exported."""
        found = []
        for export in self.exports("traces"):
            for resource_spans in export.request.resource_spans:
                if attributes(resource_spans.resource.attributes).get("service.name") != (
                    service_name
                ):
                    continue
                for scope_spans in resource_spans.scope_spans:
                    found.extend((export.received_at, span) for span in scope_spans.spans)
        return found

    def metric_points(self, service_name: str, name: str) -> list[tuple[float, Any]]:
        """(arrival time, data point) for every point of metric `name`, in arrival order."""
        found = []
        for export in self.exports("metrics"):
            for resource_metrics in export.request.resource_metrics:
                if attributes(resource_metrics.resource.attributes).get("service.name") != (
                    service_name
                ):
                    continue
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        if metric.name != name:
                            continue
                        data = getattr(metric, metric.WhichOneof("data"))
                        found.extend((export.received_at, p) for p in data.data_points)
        return found

    def log_bodies(self, service_name: str) -> list[str]:
        bodies = []
        for export in self.exports("logs"):
            for resource_logs in export.request.resource_logs:
                if attributes(resource_logs.resource.attributes).get("service.name") != (
                    service_name
                ):
                    continue
                for scope_logs in resource_logs.scope_logs:
                    bodies.extend(str(_value(r.body)) for r in scope_logs.log_records)
        return bodies


class BlackHole:
    """A collector that never answers (a hung or partitioned one)."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(128)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._socket.close()


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)
