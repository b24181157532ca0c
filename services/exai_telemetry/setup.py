"""`setup_telemetry()`: tracer, meter and log wiring shared by all services (DESIGN §6).

Production: OTLP/HTTP exporters to `OTEL_EXPORTER_OTLP_ENDPOINT` for traces, metrics
and logs; a batch span processor with a bounded queue (a dead collector costs dropped
spans, counted by the SDK as `otel.sdk.processor.span.processed{error.type="queue_full"}`,
never a blocked request) that exports within `OTEL_BSP_SCHEDULE_DELAY` (500 ms), well
inside the collector's tail-sampling wait. The SDK's own histograms carry no exemplars
(`OTEL_METRICS_EXEMPLAR_FILTER=always_off` unless set): they would point at traces that
tail sampling drops; the collector attaches exemplars after sampling instead. Tests pass
`span_exporter` / `metric_reader` / `log_exporter` explicitly and get synchronous,
in-memory telemetry. Providers are returned, not only installed globally, so several
services can live in one test process, each with its own resource.

Process metrics (opentelemetry-instrumentation-system-metrics, ``process.*`` and
``cpython.gc.*`` only: never the host's, which a node exporter reports) come with the
OTLP exporters: the instrumentation is one per process, and a process is one service
in production. Tests ask for them with ``process_metrics=True``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry import metrics, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from exai_telemetry.correlation import CorrelationIdSpanProcessor
from exai_telemetry.logs import attach_otlp_logs, configure_logging, detach_otlp_logs
from exai_telemetry.redaction import RedactingSpanExporter, SecretRegistry
from exai_telemetry.settings import ServiceSettings

logger = logging.getLogger(__name__)

METRIC_EXPORT_INTERVAL_MS = 5000

# What the system-metrics instrumentation reports: this process only (CPU, memory, GC,
# open file descriptors, threads). The host's own figures are not the service's.
PROCESS_METRICS: dict[str, list[str] | None] = {
    "process.cpu.time": ["user", "system"],
    "process.cpu.utilization": None,
    "process.memory.usage": None,
    "process.memory.virtual": None,
    "process.open_file_descriptor.count": None,
    "process.thread.count": None,
    "cpython.gc.collections": None,
    "cpython.gc.collected_objects": None,
    "cpython.gc.uncollectable_objects": None,
}

# Call durations span milliseconds (cache hits) to minutes (long generations).
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)


@dataclass
class Telemetry:
    service_name: str
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    secrets: SecretRegistry
    capture_content: bool
    logger_provider: LoggerProvider | None = None
    flush_timeout_s: float = 5.0
    # True when this service's meter provider got the process metrics (one per process).
    process_metrics: bool = False
    _shut_down: bool = field(default=False, repr=False)

    def tracer(self, name: str) -> trace.Tracer:
        return self.tracer_provider.get_tracer(name)

    def meter(self, name: str) -> metrics.Meter:
        return self.meter_provider.get_meter(name)

    def shutdown(self) -> bool:
        """Export what is queued (spans, log records, one last metric collection) and
        stop the exporters, within `flush_timeout_s` in all; safe to call twice.

        Each provider's shutdown exports what it holds (force_flush() is not used: it
        ignores its timeout in this SDK version), but their own bounds are loose: a
        batch processor waits up to 30 s, each export retries for up to
        EXAI_OTLP_TIMEOUT_S. So the three run in parallel and a hung collector is left
        behind at the deadline (False: the rest is dropped), rather than the process
        being SIGKILLed at the end of its stop grace period.
        """
        if self._shut_down:
            return True
        self._shut_down = True
        if self.process_metrics:
            # The next service set up in this process (tests) may take them over.
            release_process_metrics()
        if self.logger_provider is not None:
            # From here on log lines go to stdout only (this warning below included).
            detach_otlp_logs()
        timeout_ms = self.flush_timeout_s * 1000
        steps: dict[str, Callable[[], object]] = {
            "traces": self.tracer_provider.shutdown,
            "metrics": lambda: self.meter_provider.shutdown(timeout_millis=timeout_ms),
        }
        if self.logger_provider is not None:
            steps["logs"] = self.logger_provider.shutdown
        started = time.monotonic()
        threads = [
            threading.Thread(
                target=_quietly, args=(name, step), name=f"exai-flush-{name}", daemon=True
            )
            for name, step in steps.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, started + self.flush_timeout_s - time.monotonic()))
        unfinished = [
            name for name, thread in zip(steps, threads, strict=True) if thread.is_alive()
        ]
        if unfinished:
            logger.warning(
                "telemetry flush not done within %gs (EXAI_TELEMETRY_FLUSH_S): %s dropped",
                self.flush_timeout_s,
                ", ".join(unfinished),
            )
            return False
        logger.info("telemetry flushed in %.3fs", time.monotonic() - started)
        return True


def _quietly(name: str, step: Callable[[], object]) -> None:
    try:
        step()
    except Exception:  # a failed flush must not stop the others or the shutdown
        logger.warning("telemetry flush of %s failed", name, exc_info=True)


def instrument_process_metrics(meter_provider: MeterProvider) -> bool:
    """Report this process's metrics through `meter_provider`; False (and nothing
    done) when another provider of this process already reports them."""
    from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor

    instrumentor = SystemMetricsInstrumentor(config=PROCESS_METRICS)
    if instrumentor.is_instrumented_by_opentelemetry:
        logger.debug("process metrics already reported by another service of this process")
        return False
    instrumentor.instrument(meter_provider=meter_provider)
    return True


def release_process_metrics() -> None:
    from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor

    instrumentor = SystemMetricsInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()


def _views() -> list[View]:
    # Only our own durations and the GenAI call duration: the SLO needs a bucket at 5 s.
    # Instruments with semconv advisory buckets (MCP, GenAI chunk timings, HTTP) keep
    # theirs; a wildcard View would override them (and a second matching View would
    # duplicate the stream).
    return [
        View(
            instrument_name="exai.*duration*",
            aggregation=ExplicitBucketHistogramAggregation(DURATION_BUCKETS_S),
        ),
        View(
            instrument_name="gen_ai.client.operation.duration",
            aggregation=ExplicitBucketHistogramAggregation(DURATION_BUCKETS_S),
        ),
        View(
            instrument_name="gen_ai.client.token.usage",
            aggregation=ExplicitBucketHistogramAggregation(TOKEN_BUCKETS),
        ),
    ]


def build_resource(service_name: str, version: str, environment: str) -> Resource:
    return Resource.create(
        {
            "service.name": service_name,
            "service.version": version,
            "service.instance.id": f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}",
            "deployment.environment.name": environment,
        }
    )


@dataclass(frozen=True)
class _OtlpExporters:
    spans: SpanExporter
    metrics: MetricReader
    logs: LogRecordExporter


def _otlp_exporters(endpoint: str, timeout_s: float) -> _OtlpExporters:
    # Imported here: tests never need the exporter stack.
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    base = endpoint.rstrip("/")
    return _OtlpExporters(
        spans=OTLPSpanExporter(
            endpoint=f"{base}/v1/traces", timeout=timeout_s, compression=Compression.Gzip
        ),
        metrics=PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{base}/v1/metrics", timeout=timeout_s),
            export_interval_millis=METRIC_EXPORT_INTERVAL_MS,
        ),
        logs=OTLPLogExporter(
            endpoint=f"{base}/v1/logs", timeout=timeout_s, compression=Compression.Gzip
        ),
    )


def setup_telemetry(
    service_name: str,
    version: str,
    settings: ServiceSettings,
    *,
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
    log_exporter: LogRecordExporter | None = None,
    install_global: bool = True,
    configure_logs: bool = True,
    process_metrics: bool | None = None,
) -> Telemetry:
    """Build providers for one service.

    With explicit exporters (tests) spans are exported synchronously. Without them,
    OTLP/HTTP goes to `settings.otel_exporter_otlp_endpoint`; with no endpoint or with
    `OTEL_SDK_DISABLED=true`, spans are recorded (so trace IDs exist for clients) but
    not exported. `process_metrics` (default: when exporting over OTLP) adds the
    process's CPU, memory, GC, file descriptor and thread metrics.
    """
    name = settings.otel_service_name or service_name
    registry = SecretRegistry(settings.secret_values())
    # Stable HTTP and database semconv only (http.request.method, db.system.name, …):
    # the instrumentations read this when they instrument, i.e. after this call.
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http,database")
    os.environ.setdefault("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    resource = build_resource(name, version, settings.environment)

    readers: list[MetricReader] = []
    exporter: SpanExporter | None = span_exporter
    logs_exporter: LogRecordExporter | None = log_exporter
    if metric_reader is not None:
        readers.append(metric_reader)
    if exporter is None and settings.otel_exporter_otlp_endpoint and not settings.otel_sdk_disabled:
        otlp = _otlp_exporters(settings.otel_exporter_otlp_endpoint, settings.otlp_timeout_s)
        exporter = otlp.spans
        readers.append(otlp.metrics)
        if settings.otlp_logs:
            logs_exporter = otlp.logs

    # No exemplars from the SDK unless OTEL_METRICS_EXEMPLAR_FILTER asks for them: they
    # would point at traces tail sampling drops (the collector adds them after sampling).
    exemplar_filter = (
        None if "OTEL_METRICS_EXEMPLAR_FILTER" in os.environ else AlwaysOffExemplarFilter()
    )
    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=readers,
        views=_views(),
        exemplar_filter=exemplar_filter,
    )
    # The SDK's per-span self-metrics (otel.sdk.span.started / .live) cost about 8% of
    # the provider-proxy's CPU under load (py-spy, docs/benchmarks.md) and nothing reads
    # them; the batch processor's queue metrics, which the alerts use, stay on.
    tracer_provider = TracerProvider(resource=resource, meter_provider=NoOpMeterProvider())
    tracer_provider.add_span_processor(CorrelationIdSpanProcessor())
    if exporter is not None:
        redacting = RedactingSpanExporter(
            exporter, registry, capture_content=settings.capture_content
        )
        if span_exporter is not None:
            tracer_provider.add_span_processor(SimpleSpanProcessor(redacting))
        else:
            tracer_provider.add_span_processor(
                # Queue bounded by OTEL_BSP_MAX_QUEUE_SIZE (default 2048): a dead
                # collector costs dropped spans, never memory or request latency.
                BatchSpanProcessor(
                    redacting,
                    schedule_delay_millis=settings.bsp_schedule_delay_ms,
                    meter_provider=meter_provider,
                )
            )

    logger_provider: LoggerProvider | None = None
    if logs_exporter is not None:
        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(
            SimpleLogRecordProcessor(logs_exporter)
            if log_exporter is not None
            else BatchLogRecordProcessor(
                logs_exporter, schedule_delay_millis=settings.bsp_schedule_delay_ms
            )
        )

    if install_global:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        propagate.set_global_textmap(
            CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
        )
    if configure_logs:
        configure_logging(name, settings.log_level, registry)
        if logger_provider is not None:
            attach_otlp_logs(logger_provider, settings.log_level, registry)
    if exporter is None:
        logger.info("telemetry export disabled (no OTEL_EXPORTER_OTLP_ENDPOINT)")
    if process_metrics is None:
        process_metrics = metric_reader is None and bool(readers)
    reports_process = process_metrics and instrument_process_metrics(meter_provider)
    return Telemetry(
        name,
        tracer_provider,
        meter_provider,
        registry,
        settings.capture_content,
        logger_provider=logger_provider,
        flush_timeout_s=settings.telemetry_flush_s,
        process_metrics=reports_process,
    )
