"""`Telemetry.shutdown()`: the last export of spans, metrics and logs, bounded in time.

A service calls it after its drain; the compose `stop_grace_period` counts on it taking
at most `EXAI_TELEMETRY_FLUSH_S`, whatever the collector does.
"""

from __future__ import annotations

import logging
import time

import pytest

from exai_telemetry.settings import ServiceSettings, load_settings
from exai_telemetry.setup import setup_telemetry
from tests.support.otlp import BlackHole, OtlpReceiver, attributes


def test_shutdown_exports_what_is_queued_to_a_live_collector() -> None:
    with OtlpReceiver() as receiver:
        # Schedules far beyond the test: only the shutdown can have exported these.
        settings = ServiceSettings(
            otel_exporter_otlp_endpoint=receiver.url, bsp_schedule_delay_ms=2000
        )
        telemetry = setup_telemetry(
            "svc", "t", settings, install_global=False, configure_logs=False
        )
        with telemetry.tracer("t").start_as_current_span("last-call"):
            telemetry.meter("t").create_counter("exai.test.calls").add(3, {"outcome": "ok"})
        started = time.monotonic()
        assert telemetry.shutdown() is True
        elapsed = time.monotonic() - started
        assert elapsed < 2, elapsed
        assert [span.name for _, span in receiver.spans("svc")] == ["last-call"]
        points = receiver.metric_points("svc", "exai.test.calls")
        assert [(attributes(p.attributes), p.as_int) for _, p in points] == [({"outcome": "ok"}, 3)]
        assert telemetry.shutdown() is True  # twice is harmless


def test_a_hung_collector_costs_the_flush_bound_and_no_more(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with BlackHole() as collector:
        # Each export alone would wait 30 s, the batch processors up to 30 s more.
        settings = ServiceSettings(
            otel_exporter_otlp_endpoint=collector.url, otlp_timeout_s=30, telemetry_flush_s=0.5
        )
        telemetry = setup_telemetry(
            "svc", "t", settings, install_global=False, configure_logs=False
        )
        for i in range(20):
            with telemetry.tracer("t").start_as_current_span(f"s{i}"):
                pass
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="exai_telemetry.setup"):
            assert telemetry.shutdown() is False
        elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 1.5, elapsed
    assert "telemetry flush not done within 0.5s" in caplog.text


@pytest.mark.parametrize("value", ["0", "-1", "61", "soon"])
def test_the_flush_bound_is_validated(
    value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EXAI_TELEMETRY_FLUSH_S", value)
    with pytest.raises(SystemExit):
        load_settings(ServiceSettings)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: invalid setting EXAI_TELEMETRY_FLUSH_S")
