"""In-memory telemetry for tests: what a service exported, inspectable synchronously."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from exai_telemetry.settings import ServiceSettings
from exai_telemetry.setup import Telemetry, setup_telemetry


@dataclass
class CapturedTelemetry:
    """Spans of every service built from this capture land in one exporter."""

    exporter: InMemorySpanExporter

    def build(
        self, service_name: str, settings: ServiceSettings | None = None
    ) -> tuple[Telemetry, InMemoryMetricReader]:
        reader = InMemoryMetricReader()
        telemetry = setup_telemetry(
            service_name,
            "test",
            settings or ServiceSettings(),
            span_exporter=self.exporter,
            metric_reader=reader,
            install_global=False,
            configure_logs=False,
        )
        return telemetry, reader

    def spans(self) -> tuple[ReadableSpan, ...]:
        return tuple(self.exporter.get_finished_spans())

    def spans_of(self, service_name: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.resource.attributes["service.name"] == service_name]


def metric_points(reader: InMemoryMetricReader, name: str) -> Iterator[tuple[dict[str, Any], Any]]:
    """(attributes, point) for every data point of metric `name`."""
    data = reader.get_metrics_data()
    if data is None:
        return
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        yield dict(point.attributes or {}), point


def metric_unit(reader: InMemoryMetricReader, name: str) -> str | None:
    """The unit metric `name` was recorded with (None when it was never recorded)."""
    data = reader.get_metrics_data()
    assert data is not None
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == name:
                    return str(metric.unit)
    return None
