"""(b) Per-service drill-down: `$service` and `$env`; RED by span and route, outgoing
calls by callee, the storage adapter's DB and Redis client spans, a latency heatmap,
payload sizes, the process (CPU, memory, GC, file descriptors)."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from exai_dashboards.common import base, with_rows
from exai_dashboards.panels import (
    NO_TRAFFIC,
    heatmap_panel,
    label_values_variable,
    latency_panel,
    prom,
    timeseries_panel,
)
from exai_dashboards.promql import (
    CALLS,
    CLIENT,
    ENV,
    ERROR,
    KEPT_LATENCY,
    LATENCY,
    RATE,
    SERVER,
    STORE_SPANS,
    live,
    quantile,
    rate_sum,
    ratio,
    sel,
)

SERVICE = 'service_name=~"$service"'
BY_SPAN = ["service_name", "span_name"]
BY_STORE = ["service_name", "db_system_name", "span_name"]
# The collector's service graph pairs each client span with the server span that
# answered it (or names the callee from db.system.name / server.address when nothing
# instrumented answers: Redis, Postgres, a provider's API): one line per callee, where
# span names would merge every HTTP call into one "POST" line. Its series carry the
# caller as `client` and no environment label (the `$env` filter does not apply).
GRAPH_CLIENT = 'client=~"$service"'
GRAPH_TOTAL = "traces_service_graph_request_total"
GRAPH_FAILED = "traces_service_graph_request_failed_total"
GRAPH_LATENCY = "traces_service_graph_request_client_seconds_bucket"
BY_EDGE = ["client", "server"]
PROCESS = sel(SERVICE, ENV)
BY_INSTANCE = ["service_name", "service_instance_id"]


def service_dashboard() -> Dashboard:
    red = [
        timeseries_panel(
            "Requests per second by span",
            "Server spans per second: one per request the service handled.",
            [prom(rate_sum(CALLS, SERVICE, ENV, SERVER, labels=BY_SPAN), "{{span_name}}")],
            unit="reqps",
        ),
        timeseries_panel(
            "Error ratio by span",
            "Share of server spans with status ERROR; 0 when nothing fails.",
            [prom(ratio(CALLS, [ERROR], [SERVICE, ENV, SERVER], labels=BY_SPAN), "{{span_name}}")],
            unit="percentunit",
            nan=NO_TRAFFIC,
        ),
        latency_panel(
            "p95 latency by span",
            "95th percentile of server span durations (all spans).",
            plotted=quantile(0.95, LATENCY, SERVICE, ENV, SERVER, labels=BY_SPAN),
            exemplars=quantile(0.95, KEPT_LATENCY, SERVICE, ENV, SERVER, labels=BY_SPAN),
            legend="{{span_name}}",
        ),
        timeseries_panel(
            "Requests per second by HTTP route and status",
            "HTTP server spans by route and status code (the gateway's WebSocket calls have"
            " no route: see the span panels).",
            [
                prom(
                    rate_sum(
                        CALLS,
                        SERVICE,
                        ENV,
                        SERVER,
                        'http_route!=""',
                        labels=["http_request_method", "http_route", "http_response_status_code"],
                    ),
                    "{{http_request_method}} {{http_route}} {{http_response_status_code}}",
                )
            ],
            unit="reqps",
            span=12,
        ),
        heatmap_panel(
            "Server latency heatmap",
            "Server spans per second in each latency bucket (all spans): where the bulk sits"
            " and how long the tail is.",
            prom(
                f"sum by (le) (rate({LATENCY}{sel(SERVICE, ENV, SERVER)}[{RATE}]))",
                "{{le}}",
                heatmap_format=True,
            ),
        ),
    ]

    outgoing = [
        timeseries_panel(
            "Outgoing calls per second by callee",
            "Calls this service makes, by the service or system that answered them (the"
            " collector's service graph: other EXAI services, Redis, the database, a"
            " provider's API).",
            [
                prom(
                    rate_sum(GRAPH_TOTAL, GRAPH_CLIENT, labels=BY_EDGE),
                    "{{client}} → {{server}}",
                )
            ],
            unit="reqps",
        ),
        timeseries_panel(
            "Outgoing call failure ratio by callee",
            "Share of those calls that failed (client or server span with an error); 0 when"
            " none fail.",
            [
                prom(
                    f"(\n  {rate_sum(GRAPH_FAILED, GRAPH_CLIENT, labels=BY_EDGE)}\n  or\n"
                    f"  {rate_sum(GRAPH_TOTAL, GRAPH_CLIENT, labels=BY_EDGE)} * 0\n)\n/\n"
                    f"{rate_sum(GRAPH_TOTAL, GRAPH_CLIENT, labels=BY_EDGE)}",
                    "{{client}} → {{server}}",
                )
            ],
            unit="percentunit",
            nan=NO_TRAFFIC,
        ),
        timeseries_panel(
            "Outgoing call p95 by callee",
            "95th percentile of the calls' duration as the caller saw it (client span).",
            [
                prom(
                    quantile(0.95, GRAPH_LATENCY, GRAPH_CLIENT, labels=BY_EDGE),
                    "{{client}} → {{server}}",
                )
            ],
            unit="s",
            nan=NO_TRAFFIC,
        ),
    ]

    stores = [
        timeseries_panel(
            "DB and Redis commands per second",
            "Client spans with a db.system.name: the durable store (SQL statements, Supabase"
            " REST requests) and the cache (Redis commands), by system and operation.",
            [
                prom(
                    rate_sum(CALLS, SERVICE, ENV, CLIENT, STORE_SPANS, labels=BY_STORE),
                    "{{db_system_name}} {{span_name}}",
                )
            ],
            unit="ops",
        ),
        timeseries_panel(
            "DB and Redis error ratio",
            "Share of DB and Redis client spans with status ERROR; 0 when none fail.",
            [
                prom(
                    ratio(CALLS, [ERROR], [SERVICE, ENV, CLIENT, STORE_SPANS], labels=BY_STORE),
                    "{{db_system_name}} {{span_name}}",
                )
            ],
            unit="percentunit",
            nan=NO_TRAFFIC,
        ),
        latency_panel(
            "DB and Redis p95 latency",
            "95th percentile of DB and Redis client span durations (all spans).",
            plotted=quantile(0.95, LATENCY, SERVICE, ENV, CLIENT, STORE_SPANS, labels=BY_STORE),
            exemplars=quantile(
                0.95, KEPT_LATENCY, SERVICE, ENV, CLIENT, STORE_SPANS, labels=BY_STORE
            ),
            legend="{{db_system_name}} {{span_name}}",
        ),
    ]

    payload = [
        timeseries_panel(
            "HTTP body bytes per second by route",
            "http.server.request.body.size and http.server.response.body.size (ASGI"
            " instrumentation; Content-Length, so streamed answers are not counted).",
            [
                prom(
                    rate_sum(
                        "http_server_request_body_size_bytes_sum",
                        SERVICE,
                        ENV,
                        labels=["service_name", "http_route"],
                    ),
                    "in {{service_name}} {{http_route}}",
                ),
                prom(
                    rate_sum(
                        "http_server_response_body_size_bytes_sum",
                        SERVICE,
                        ENV,
                        labels=["service_name", "http_route"],
                    ),
                    "out {{service_name}} {{http_route}}",
                    ref="B",
                ),
            ],
            unit="Bps",
            span=24,
        ),
    ]

    # opentelemetry-instrumentation-system-metrics (process.* only), per process. Gauges
    # count running processes only: a restarted process's old series keep their last
    # value in Prometheus for 5 minutes.
    process = [
        timeseries_panel(
            "CPU (cores) by process",
            "process.cpu.time per second, user + system: 1 = one core busy.",
            [
                prom(
                    rate_sum("process_cpu_time_seconds_total", SERVICE, ENV, labels=BY_INSTANCE),
                    "{{service_name}} {{service_instance_id}}",
                )
            ],
            unit="short",
            span=6,
        ),
        timeseries_panel(
            "Memory (RSS) by process",
            "process.memory.usage: resident set size.",
            [
                prom(
                    f"sum by (service_name, service_instance_id) "
                    f"({live(f'process_memory_usage_bytes{PROCESS}')})",
                    "{{service_name}} {{service_instance_id}}",
                )
            ],
            unit="bytes",
            span=6,
        ),
        timeseries_panel(
            "GC collections per second by generation",
            "cpython.gc.collections: frequent generation-2 collections mean a growing heap.",
            [
                prom(
                    rate_sum(
                        "cpython_gc_collections_total",
                        SERVICE,
                        ENV,
                        labels=["service_name", "cpython_gc_generation"],
                    ),
                    "{{service_name}} gen {{cpython_gc_generation}}",
                )
            ],
            unit="ops",
            span=6,
        ),
        timeseries_panel(
            "Open file descriptors by process",
            "process.open_file_descriptor.count: sockets and files; a steady climb is a leak.",
            [
                prom(
                    f"sum by (service_name, service_instance_id) "
                    f"({live(f'process_open_file_descriptor_count{PROCESS}')})",
                    "{{service_name}} {{service_instance_id}}",
                )
            ],
            span=6,
        ),
    ]

    builder = (
        base(
            "exai-service",
            "EXAI service drill-down",
            "One service (or all): RED by span and route, outgoing calls by callee, DB and"
            " Redis, latency heatmap, payload sizes, process CPU, memory, GC and file"
            " descriptors.",
        )
        .with_variable(
            label_values_variable(
                "service",
                "service",
                f"label_values({CALLS}, service_name)",
                "service.name of the spans.",
            )
        )
        .with_variable(
            label_values_variable(
                "env",
                "environment",
                f"label_values({CALLS}{{{SERVICE}}}, deployment_environment_name)",
                "deployment.environment.name of the service.",
            )
        )
    )
    return with_rows(
        builder,
        [
            ("RED (server spans)", red),
            ("Outgoing calls by callee (service graph)", outgoing),
            ("DB and Redis (client spans)", stores),
            ("Payload", payload),
            ("Process", process),
        ],
        explore_service="$service",
    )
