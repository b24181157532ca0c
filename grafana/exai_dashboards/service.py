"""(b) Per-service drill-down: `$service` and `$env`; RED by span and route, outgoing
calls, the storage adapter's DB and Redis client spans, a latency heatmap, payload
sizes."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from exai_dashboards.common import base, with_rows
from exai_dashboards.panels import (
    heatmap_panel,
    label_values_variable,
    latency_panel,
    prom,
    timeseries_panel,
)
from exai_dashboards.promql import (
    CALLS,
    CLIENT,
    ERROR,
    KEPT_LATENCY,
    LATENCY,
    RATE,
    SERVER,
    STORE_SPANS,
    quantile,
    rate_sum,
    ratio,
    sel,
)

SERVICE = 'service_name=~"$service"'
ENV = 'deployment_environment_name=~"$env"'
BY_SPAN = ["service_name", "span_name"]


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
            "Server span durations per latency bucket (all spans): where the bulk sits and"
            " how long the tail is.",
            prom(
                f"sum by (le) (increase({LATENCY}{sel(SERVICE, ENV, SERVER)}[{RATE}]))",
                "{{le}}",
                heatmap_format=True,
            ),
        ),
    ]

    outgoing = [
        timeseries_panel(
            "Outgoing calls per second by span",
            "Client spans: HTTP calls to other services and providers, DB and cache commands.",
            [prom(rate_sum(CALLS, SERVICE, ENV, CLIENT, labels=BY_SPAN), "{{span_name}}")],
            unit="reqps",
            span=12,
        ),
        latency_panel(
            "Outgoing call p95 by span",
            "95th percentile of client span durations (all spans).",
            plotted=quantile(0.95, LATENCY, SERVICE, ENV, CLIENT, labels=BY_SPAN),
            exemplars=quantile(0.95, KEPT_LATENCY, SERVICE, ENV, CLIENT, labels=BY_SPAN),
            legend="{{span_name}}",
            span=12,
        ),
    ]

    stores = [
        timeseries_panel(
            "DB and Redis commands per second",
            "Client spans of the durable store (SQL statements) and of the cache (Redis commands).",
            [
                prom(
                    rate_sum(CALLS, SERVICE, ENV, CLIENT, STORE_SPANS, labels=BY_SPAN),
                    "{{span_name}}",
                )
            ],
            unit="ops",
        ),
        timeseries_panel(
            "DB and Redis error ratio",
            "Share of DB and Redis client spans with status ERROR; 0 when none fail.",
            [
                prom(
                    ratio(CALLS, [ERROR], [SERVICE, ENV, CLIENT, STORE_SPANS], labels=BY_SPAN),
                    "{{span_name}}",
                )
            ],
            unit="percentunit",
        ),
        latency_panel(
            "DB and Redis p95 latency",
            "95th percentile of DB and Redis client span durations (all spans).",
            plotted=quantile(0.95, LATENCY, SERVICE, ENV, CLIENT, STORE_SPANS, labels=BY_SPAN),
            exemplars=quantile(
                0.95, KEPT_LATENCY, SERVICE, ENV, CLIENT, STORE_SPANS, labels=BY_SPAN
            ),
            legend="{{span_name}}",
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

    builder = (
        base(
            "exai-service",
            "EXAI service drill-down",
            "One service (or all): RED by span and route, outgoing calls, DB and Redis,"
            " latency heatmap, payload sizes.",
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
            ("Outgoing calls (client spans)", outgoing),
            ("DB and Redis (client spans)", stores),
            ("Payload", payload),
        ],
    )
