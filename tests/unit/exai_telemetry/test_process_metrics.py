"""Every service reports its own process's CPU, memory, GC, file descriptors and threads
(opentelemetry-instrumentation-system-metrics), and nothing about the host."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from exai_telemetry.settings import ServiceSettings
from exai_telemetry.setup import Telemetry, release_process_metrics, setup_telemetry

# The names dashboards use (Prometheus: process_cpu_time_seconds_total{type},
# process_memory_usage_bytes, process_open_file_descriptor_count, process_thread_count,
# cpython_gc_collections_total{generation}, …).
EXPECTED = {
    "process.cpu.time",
    "process.cpu.utilization",
    "process.memory.usage",
    "process.memory.virtual",
    "process.open_file_descriptor.count",
    "process.thread.count",
    "cpython.gc.collections",
    "cpython.gc.collected_objects",
    "cpython.gc.uncollectable_objects",
}


@pytest.fixture
def fresh() -> Iterator[list[Telemetry]]:
    release_process_metrics()  # whatever an earlier test in this process set up
    built: list[Telemetry] = []
    yield built
    for telemetry in built:
        telemetry.shutdown()


def build(built: list[Telemetry], **kwargs: bool) -> tuple[Telemetry, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    telemetry = setup_telemetry(
        "svc",
        "test",
        ServiceSettings(),
        metric_reader=reader,
        install_global=False,
        configure_logs=False,
        **kwargs,
    )
    built.append(telemetry)
    return telemetry, reader


def exported(reader: InMemoryMetricReader) -> dict[str, list[dict[str, object]]]:
    data = reader.get_metrics_data()
    if data is None:
        return {}
    return {
        metric.name: [dict(p.attributes or {}) for p in metric.data.data_points]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    }


def test_process_metrics_only_never_the_hosts(fresh: list[Telemetry]) -> None:
    telemetry, reader = build(fresh, process_metrics=True)
    assert telemetry.process_metrics
    metrics = exported(reader)
    assert EXPECTED <= set(metrics)
    assert not [name for name in metrics if name.startswith("system.")]
    assert {a["type"] for a in metrics["process.cpu.time"]} == {"user", "system"}
    assert {a["generation"] for a in metrics["cpython.gc.collections"]} == {"0", "1", "2"}


def test_one_service_per_process_reports_them_until_it_shuts_down(
    fresh: list[Telemetry],
) -> None:
    first, first_reader = build(fresh, process_metrics=True)
    second, second_reader = build(fresh, process_metrics=True)
    assert first.process_metrics and not second.process_metrics
    assert EXPECTED <= set(exported(first_reader))
    assert not EXPECTED & set(exported(second_reader))
    first.shutdown()
    third, third_reader = build(fresh, process_metrics=True)
    assert third.process_metrics
    assert EXPECTED <= set(exported(third_reader))


def test_tests_with_their_own_reader_get_none_unless_they_ask(fresh: list[Telemetry]) -> None:
    telemetry, reader = build(fresh)
    assert not telemetry.process_metrics
    assert not EXPECTED & set(exported(reader))
