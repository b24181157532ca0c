"""(d) Telemetry pipeline health: what the collector accepted, refused and failed to
send, its export queues, its memory against the memory_limiter, tail-sampling decisions
and late spans, and spans the SDKs dropped.

The collector's own metrics (`service.telemetry.metrics`, level normal, scraped from
:8888). The tail_sampling processor of v0.161 emits at that level, among others:
count_traces_sampled{policy, decision, sampled}, global_count_traces_sampled{decision,
sampled}, new_trace_id_received, sampling_traces_on_memory,
sampling_trace_dropped_too_early, early_releases_from_cache_decision{sampled} (spans of
an already decided trace: late spans, with the decision cache) and
sampling_late_span_age_seconds (late spans of a decided trace still in memory; never
with the decision cache). count_spans_sampled needs an alpha feature gate.
"""

from __future__ import annotations

import re
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import prometheus
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import Dashboard

from exai_dashboards.common import base, with_rows
from exai_dashboards.panels import prom, stat_panel, timeseries_panel
from exai_dashboards.promql import CALLS, KEPT_CALLS, rate_sum, rate_sum_or_zero, ratio

SIGNALS = (("spans", "spans"), ("metric_points", "metric points"), ("log_records", "log records"))
TAIL = "otelcol_processor_tail_sampling"
COLLECTOR_CONFIG = Path(__file__).resolve().parents[2] / "otel-collector.yaml"
MIB = 1024 * 1024


def collector_default(variable: str) -> int:
    """The default of `${env:<variable>:-N}` in otel-collector.yaml: the value both
    stacks run unless the operator overrides it (the collector publishes no metric of its
    memory_limiter settings)."""
    text = COLLECTOR_CONFIG.read_text(encoding="utf-8")
    match = re.search(rf"\$\{{env:{variable}:-(\d+)\}}", text)
    if match is None:
        raise LookupError(f"{variable} has no numeric default in {COLLECTOR_CONFIG.name}")
    return int(match.group(1))


def memory_limits_bytes() -> tuple[int, int]:
    """(soft, hard): data is refused above limit - spike; above the limit, GC is forced."""
    limit = collector_default("EXAI_OTELCOL_MEMORY_LIMIT_MIB")
    spike = collector_default("EXAI_OTELCOL_MEMORY_SPIKE_MIB")
    return (limit - spike) * MIB, limit * MIB


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
            "Traces held in memory until their decision: 3 s after their root span arrives,"
            " at most decision_wait (130 s, sized from the 120 s call timeout) after their"
            " first span. New traces per second beside them.",
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
        timeseries_panel(
            "Late spans per second",
            "Spans that reached tail sampling after their trace was decided, so the decision"
            " was made without them; they follow it (kept with a kept trace, dropped with a"
            " dropped one). The decision cache counts them, by the decision (`sampled`);"
            " late_span_age stays empty with a decision cache (it only sees decided traces"
            " still in memory). 0 while none are late; TailSamplingLateSpans fires above 1 %"
            " of the spans received.",
            [
                prom(
                    rate_sum_or_zero(
                        f"{TAIL}_early_releases_from_cache_decision_total",
                        [],
                        zero_from="otelcol_receiver_accepted_spans_total",
                        labels=["sampled"],
                    ),
                    "late, sampled={{sampled}}",
                ),
            ],
            span=16,
            steps=((None, "green"), (0.001, "orange")),
        ),
        stat_panel(
            "Late spans (1 h)",
            "Share of received spans that arrived after their trace's decision over the last"
            " hour. Above 1 %, slow, failed or retried calls may be missing from the trace"
            " store: decision_wait is shorter than the calls, or exports are slow.",
            prom(
                f"(\n  {rate_sum(f'{TAIL}_early_releases_from_cache_decision_total', window='1h')}"
                f"\n  or\n  {rate_sum('otelcol_receiver_accepted_spans_total', window='1h')} * 0"
                f"\n)\n/\n{rate_sum('otelcol_receiver_accepted_spans_total', window='1h')}",
                "late",
            ),
            unit="percentunit",
            decimals=2,
            steps=((None, "green"), (0.001, "orange"), (0.01, "red")),
            span=8,
            height=8,
            nan="no spans",
        ),
    ]

    soft_limit, hard_limit = memory_limits_bytes()
    memory = timeseries_panel(
        "Collector memory against its limiter",
        "Go heap (what the memory_limiter measures) and resident memory per collector. Above"
        f" the orange line ({soft_limit // MIB} MiB = EXAI_OTELCOL_MEMORY_LIMIT_MIB -"
        " EXAI_OTELCOL_MEMORY_SPIKE_MIB) the receivers refuse data and the services retry,"
        f" then drop; at the red one ({hard_limit // MIB} MiB) GC is forced. The lines are"
        " the shipped defaults, read from otel-collector.yaml when this dashboard was"
        " generated: regenerate after overriding them. Most of the heap is traces waiting"
        " for their sampling decision (~36 KB each).",
        [
            prom(
                "max by (instance) (otelcol_process_runtime_heap_alloc_bytes)", "heap {{instance}}"
            ),
            prom(
                "max by (instance) (otelcol_process_memory_rss_bytes)",
                "resident {{instance}}",
                ref="B",
            ),
        ],
        unit="bytes",
        span=16,
        steps=((None, "green"), (soft_limit, "orange"), (hard_limit, "red")),
    ).thresholds_style(
        common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
    )
    collector = [
        memory,
        stat_panel(
            "Heap vs refusal limit",
            "The largest collector heap as a share of the limit above which it refuses data"
            f" ({soft_limit // MIB} MiB by default).",
            prom(f"max(otelcol_process_runtime_heap_alloc_bytes) / {soft_limit}", "heap"),
            unit="percentunit",
            steps=((None, "green"), (0.8, "orange"), (1, "red")),
            span=8,
            height=8,
            sparkline=True,
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
            "Collector intake and export, queues, memory, tail-sampling decisions and late"
            " spans, SDK drops.",
        ),
        [
            ("Collector: receive and export", intake),
            ("Collector memory", collector),
            ("Tail sampling", sampling),
            ("Service SDKs", sdk),
        ],
    )
