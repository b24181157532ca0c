"""(d) Telemetry pipeline health: what the collector accepted, refused and failed to
send, its export queues, tail-sampling decisions, and spans the SDKs dropped.

The collector's own metrics (`service.telemetry.metrics`, level normal, scraped from
:8888). The tail_sampling processor of v0.161 emits at that level, among others:
count_traces_sampled{policy, decision, sampled}, global_count_traces_sampled{decision,
sampled}, new_trace_id_received, sampling_traces_on_memory and
sampling_trace_dropped_too_early (count_spans_sampled needs an alpha feature gate).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import prometheus
from grafana_foundation_sdk.models.dashboard import Dashboard

from exai_dashboards.common import base, with_rows
from exai_dashboards.panels import prom, stat_panel, timeseries_panel
from exai_dashboards.promql import CALLS, KEPT_CALLS, rate_sum, rate_sum_or_zero, ratio

SIGNALS = (("spans", "spans"), ("metric_points", "metric points"), ("log_records", "log records"))
TAIL = "otelcol_processor_tail_sampling"


def _per_signal(template: str, legend: str, labels: list[str]) -> list[prometheus.Dataquery]:
    return [
        prom(
            rate_sum(template.format(signal=signal), labels=labels),
            legend.format(what=what),
            ref="ABC"[index],
        )
        for index, (signal, what) in enumerate(SIGNALS)
    ]


def _lost(kind: str, stage: str, source: str) -> list[prometheus.Dataquery]:
    """Refused / failed per signal, 0 (not No data) while nothing is lost."""
    return [
        prom(
            rate_sum_or_zero(
                f"otelcol_{stage}_{kind}_{signal}_total",
                [],
                zero_from=f"otelcol_{source}_{signal}_total",
                labels=[stage],
            ),
            f"{what} {{{{{stage}}}}}",
            ref="ABC"[index],
        )
        for index, (signal, what) in enumerate(SIGNALS)
    ]


def pipeline_dashboard() -> Dashboard:
    intake = [
        timeseries_panel(
            "Accepted per second by receiver",
            "Spans, metric points and log records the collector's receivers accepted.",
            _per_signal(
                "otelcol_receiver_accepted_{signal}_total", "{what} {{{{receiver}}}}", ["receiver"]
            ),
            unit="short",
        ),
        timeseries_panel(
            "Refused per second by receiver",
            "Refused by the pipeline (memory_limiter pressure): the SDKs retry, then drop."
            " 0 while nothing is refused.",
            _lost("refused", "receiver", "receiver_accepted"),
            unit="short",
            steps=((None, "green"), (0.001, "red")),
        ),
        timeseries_panel(
            "Sent per second by exporter",
            "Spans (to the trace store), metric points (to Prometheus) and log records the"
            " exporters delivered.",
            _per_signal(
                "otelcol_exporter_sent_{signal}_total", "{what} {{{{exporter}}}}", ["exporter"]
            ),
            unit="short",
        ),
        timeseries_panel(
            "Send failures per second by exporter",
            "Data an exporter gave up on after retrying (lost). 0 while nothing is lost.",
            _lost("send_failed", "exporter", "exporter_sent"),
            unit="short",
            steps=((None, "green"), (0.001, "red")),
        ),
        timeseries_panel(
            "Export queue: size vs capacity",
            "Batches waiting in each exporter's sending queue against its capacity; once"
            " full, new data is dropped.",
            [
                prom("max by (exporter) (otelcol_exporter_queue_size)", "size {{exporter}}"),
                prom(
                    "max by (exporter) (otelcol_exporter_queue_capacity)",
                    "capacity {{exporter}}",
                    ref="B",
                ),
            ],
            span=16,
        ),
        stat_panel(
            "Fullest export queue",
            "The highest queue fill ratio across exporters; TelemetryPipelineLosingData"
            " fires above 80 %.",
            prom(
                "max(otelcol_exporter_queue_size / otelcol_exporter_queue_capacity)",
                "fill",
            ),
            unit="percentunit",
            steps=((None, "green"), (0.5, "orange"), (0.8, "red")),
            span=8,
            height=8,
            sparkline=True,
        ),
    ]

    sampling = [
        timeseries_panel(
            "Tail-sampling decisions per second",
            "Traces decided: sampled (kept) or not_sampled (dropped), by at least one policy.",
            [
                prom(
                    rate_sum(f"{TAIL}_global_count_traces_sampled_total", labels=["decision"]),
                    "{{decision}}",
                )
            ],
        ),
        timeseries_panel(
            "Traces kept per second by policy",
            "Which policy kept them (errors, retries, fallbacks, open circuits, slow calls,"
            " the baseline share); a trace kept by several policies counts under each.",
            [
                prom(
                    rate_sum(
                        f"{TAIL}_count_traces_sampled_total",
                        'decision="sampled"',
                        labels=["policy"],
                    )
                    + "\nor\n"
                    + rate_sum(f"{TAIL}_count_traces_sampled_total", labels=["policy"])
                    + " * 0",
                    "{{policy}}",
                )
            ],
        ),
        stat_panel(
            "Traces kept (1 h)",
            "Share of traces tail sampling kept over the last hour.",
            prom(
                ratio(
                    f"{TAIL}_global_count_traces_sampled_total",
                    ['decision="sampled"'],
                    window="1h",
                ),
                "kept",
            ),
            unit="percentunit",
            decimals=1,
        ),
        timeseries_panel(
            "Traces waiting for a decision",
            "Traces held in memory until decision_wait; new traces per second beside them.",
            [
                prom(f"sum({TAIL}_sampling_traces_on_memory)", "in memory"),
                prom(rate_sum(f"{TAIL}_new_trace_id_received_total"), "new per second", ref="B"),
            ],
        ),
        timeseries_panel(
            "Traces dropped before their decision",
            "Evicted from memory (num_traces too small) before decision_wait: lost unseen."
            " The counter exists from start-up, at 0.",
            [
                prom(
                    rate_sum(f"{TAIL}_sampling_trace_dropped_too_early_total"),
                    "dropped too early",
                )
            ],
            steps=((None, "green"), (0.001, "red")),
        ),
        timeseries_panel(
            "Spans per second: all vs kept",
            "Span metrics before sampling (every span) and after it (what the trace store got).",
            [
                prom(rate_sum(CALLS), "all spans"),
                prom(rate_sum(KEPT_CALLS), "kept spans", ref="B"),
            ],
        ),
    ]

    sdk = [
        timeseries_panel(
            "SDK spans dropped (queue full) by service",
            "otel.sdk.processor.span.processed with error.type=queue_full: spans the"
            " services' batch processors dropped before export. 0 while none are.",
            [
                prom(
                    rate_sum_or_zero(
                        "otel_sdk_processor_span_processed_total",
                        ['error_type="queue_full"'],
                        zero_from="otel_sdk_processor_span_processed_total",
                        labels=["service_name"],
                    ),
                    "{{service_name}}",
                )
            ],
            steps=((None, "green"), (0.001, "red")),
        ),
        timeseries_panel(
            "SDK spans exported by service",
            "Spans the services' batch processors handed to the exporter.",
            [
                prom(
                    rate_sum(
                        "otel_sdk_processor_span_processed_total",
                        'error_type=""',
                        labels=["service_name"],
                    ),
                    "{{service_name}}",
                )
            ],
            span=16,
        ),
    ]

    return with_rows(
        base(
            "exai-pipeline",
            "EXAI telemetry pipeline",
            "Collector intake and export, queues, tail-sampling decisions, SDK drops.",
        ),
        [
            ("Collector: receive and export", intake),
            ("Tail sampling", sampling),
            ("Service SDKs", sdk),
        ],
    )
