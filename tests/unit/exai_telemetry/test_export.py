"""Exporting never blocks a request; a dead collector costs only dropped, counted spans."""

from __future__ import annotations

import socket
import time

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from exai_telemetry.settings import ServiceSettings
from exai_telemetry.setup import setup_telemetry
from tests.support.telemetry import metric_points


def test_dead_collector_drops_and_counts_spans_without_blocking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "32")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "16")
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    reader = InMemoryMetricReader()
    # A collector that accepts connections and never answers: the worst case, where a
    # synchronous export would wait out the exporter's timeout.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)
    dead = f"http://127.0.0.1:{hung.getsockname()[1]}"
    settings = ServiceSettings(otel_exporter_otlp_endpoint=dead, otlp_timeout_s=0.5)
    telemetry = setup_telemetry(
        "svc", "t", settings, metric_reader=reader, install_global=False, configure_logs=False
    )
    tracer = telemetry.tracer("t")
    started = time.perf_counter()
    for i in range(500):
        with tracer.start_as_current_span(f"s{i}"):
            pass
    elapsed = time.perf_counter() - started
    dropped = sum(
        p.value
        for attrs, p in metric_points(reader, "otel.sdk.processor.span.processed")
        if attrs.get("error.type") == "queue_full"
    )
    # 500 spans into a queue of 32 behind an exporter stuck on one batch of 16.
    assert dropped >= 500 - 32 - 16
    # Ending 500 spans took less than a few blocked exports would (500 of them would
    # take minutes).
    assert elapsed < 2.0
    hung.close()
    telemetry.shutdown()
