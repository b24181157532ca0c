"""Logs over OTLP carry the trace, the span and the correlation ID, and never a secret;
the span export delay stays inside the collector's tail-sampling wait."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry import context
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr, ValidationError

from exai_telemetry.correlation import with_correlation_id
from exai_telemetry.settings import ServiceSettings, describe_validation_error
from exai_telemetry.setup import Telemetry, setup_telemetry
from tests.support.telemetry import metric_points

SECRET = "sk-unit-" + "x" * 24


class _SecretSettings(ServiceSettings):
    api_key: SecretStr = SecretStr(SECRET)


@pytest.fixture
def logs() -> Iterator[tuple[Telemetry, InMemoryLogRecordExporter]]:
    exporter = InMemoryLogRecordExporter()
    telemetry = setup_telemetry(
        "log-svc",
        "t",
        _SecretSettings(),
        span_exporter=InMemorySpanExporter(),
        log_exporter=exporter,
        install_global=False,
    )
    yield telemetry, exporter
    telemetry.shutdown()


def test_log_record_carries_trace_span_and_correlation_id(
    logs: tuple[Telemetry, InMemoryLogRecordExporter],
) -> None:
    telemetry, exporter = logs
    token = context.attach(with_correlation_id("corr-logs-1"))
    try:
        with telemetry.tracer("t").start_as_current_span("work") as span:
            logging.getLogger("exai.test").info("stored %s messages", 3)
    finally:
        context.detach(token)
    (record,) = [r.log_record for r in exporter.get_finished_logs()]
    assert record.body == "stored 3 messages"
    assert record.trace_id == span.get_span_context().trace_id
    assert record.span_id == span.get_span_context().span_id
    assert record.attributes is not None
    assert record.attributes["exai.correlation_id"] == "corr-logs-1"
    # The stdout formatter's fields stay on stdout.
    assert "trace_id" not in record.attributes
    assert "correlation_id" not in record.attributes
    assert record.severity_text == "INFO"


def test_secrets_are_scrubbed_from_message_arguments_and_tracebacks(
    logs: tuple[Telemetry, InMemoryLogRecordExporter],
) -> None:
    _, exporter = logs
    log = logging.getLogger("exai.test")
    log.warning("upstream refused key %s", SECRET)
    try:
        raise RuntimeError(f"bad key {SECRET}")
    except RuntimeError:
        log.exception("call failed")
    records = [r.log_record for r in exporter.get_finished_logs()]
    assert len(records) == 2
    for record in records:
        assert SECRET not in str(record.body)
        assert all(SECRET not in str(v) for v in (record.attributes or {}).values())
    failed = records[1]
    assert failed.attributes is not None
    assert failed.attributes["exception.type"] == "RuntimeError"
    assert "call failed" in str(failed.body)
    assert "Traceback" in str(failed.attributes["exception.stacktrace"])


def test_shutdown_detaches_the_otlp_handler(
    logs: tuple[Telemetry, InMemoryLogRecordExporter],
) -> None:
    telemetry, exporter = logs
    telemetry.shutdown()
    logging.getLogger("exai.test").info("after shutdown")
    assert exporter.get_finished_logs() == ()


def test_span_export_delay_defaults_below_the_tail_sampling_wait() -> None:
    assert ServiceSettings().bsp_schedule_delay_ms == 500


@pytest.mark.parametrize("value", ["5000", "0", "soon"])
def test_export_delay_outside_the_sampling_window_stops_start_up(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", value)
    with pytest.raises(ValidationError) as caught:
        ServiceSettings()
    message = describe_validation_error(ServiceSettings, caught.value)
    assert message.startswith("invalid setting OTEL_BSP_SCHEDULE_DELAY:")


def test_sdk_histograms_carry_no_exemplars_that_could_point_at_dropped_traces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_METRICS_EXEMPLAR_FILTER", raising=False)
    reader = InMemoryMetricReader()
    telemetry = setup_telemetry(
        "svc",
        "t",
        ServiceSettings(),
        span_exporter=InMemorySpanExporter(),
        metric_reader=reader,
        install_global=False,
        configure_logs=False,
    )
    histogram = telemetry.meter("t").create_histogram("exai.test.duration", unit="s")
    with telemetry.tracer("t").start_as_current_span("sampled-in-the-sdk"):
        histogram.record(0.2)
    ((_, point),) = metric_points(reader, "exai.test.duration")
    assert point.count == 1
    assert list(point.exemplars) == []
    telemetry.shutdown()
