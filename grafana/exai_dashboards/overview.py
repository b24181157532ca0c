"""(a) EXAI overview: RED per service, the gateway, one card per component (what the old
HTML monitoring page showed), the live event log, and how to follow a request."""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat
from grafana_foundation_sdk.models.dashboard import Dashboard

from exai_dashboards.common import base, with_rows
from exai_dashboards.panels import (
    latency_panel,
    logql,
    logs_panel,
    prom,
    prom_table_panel,
    stat_panel,
    text_panel,
    timeseries_panel,
    trace_table_panel,
    traceql,
)
from exai_dashboards.promql import (
    CALLS,
    CLIENT,
    ERROR,
    KEPT_LATENCY,
    LATENCY,
    REDIS_SPANS,
    SERVER,
    SQL_SPANS,
    STORE_SERVICE,
    mean,
    quantile,
    rate_sum,
    rate_sum_or_zero,
    ratio,
)

FOLLOW_A_REQUEST = """\
Every call carries a **correlation ID** (returned to the client as `correlation_id`,
sent downstream as `X-Correlation-ID` and baggage). Every span of every service has it
as the attribute `exai.correlation_id`, and every log line as `exai_correlation_id`.

* Paste the ID into the **correlation_id** box at the top of this dashboard: the table
  below lists the matching traces and the event log shows only its log lines; click a
  trace ID to open it.
* Or in **Explore → Tempo → TraceQL**: `{ span.exai.correlation_id = "<id>" }`
* In a terminal: `exai trace <id>` prints the waterfall of every span with its log lines.
* From a latency panel, click an **exemplar** dot to jump to the trace behind it.
* From a span, **Logs for this span** opens its log lines in Loki; a log line's
  `trace_id` opens its trace.

Traces are tail-sampled (errors, retries, fallbacks, open circuits and slow calls are
always kept); the metrics on this dashboard count every call.
"""

EXAI_SERVICES = "ws-gateway|provider-proxy|storage-adapter|llm-simulator"


@dataclass(frozen=True)
class Component:
    """One card of the old monitoring page: events, errors, average time, bytes."""

    name: str
    what: str
    events: str
    errors: str
    mean_s: str
    volume: str
    volume_title: str
    volume_unit: str
    volume_what: str


def _provider(name: str, provider: str) -> Component:
    match = f'gen_ai_provider_name="{provider}"'
    return Component(
        name=name,
        what=f"logical calls to {name} through provider-proxy (after retries)",
        events=rate_sum("exai_provider_requests_total", match),
        errors=rate_sum_or_zero(
            "exai_provider_requests_total",
            [match, 'exai_outcome="error"'],
            zero_from="exai_provider_requests_total",
            zero_matchers=[match],
        ),
        mean_s=mean("gen_ai_client_operation_duration_seconds", match),
        volume=rate_sum("exai_provider_tokens_total", match, 'exai_token_type=~"input|output"'),
        volume_title="tokens/s",
        volume_unit="suffix: tok/s",
        volume_what=(
            "An LLM API's payload is metered in tokens (input + output), which is also what"
            " it costs; the httpx instrumentation records no client body sizes."
        ),
    )


def _store(name: str, spans: str, what: str, volume: str, volume_title: str, why: str) -> Component:
    matchers = [STORE_SERVICE, CLIENT, spans]
    return Component(
        name=name,
        what=what,
        events=rate_sum(CALLS, *matchers),
        errors=rate_sum_or_zero(CALLS, [*matchers, ERROR], zero_from=CALLS, zero_matchers=matchers),
        mean_s=mean("traces_spanmetrics_latency", *matchers),
        volume=volume,
        volume_title=volume_title,
        volume_unit="Bps",
        volume_what=why,
    )


def _storage_bytes(metric: str, method: str) -> str:
    return rate_sum(metric, STORE_SERVICE, f'http_request_method="{method}"')


def _websocket() -> Component:
    backends = 'service_name=~"provider-proxy|storage-adapter"'
    return Component(
        name="WebSocket",
        what="tool calls on the gateway's WebSocket (native and MCP)",
        events=rate_sum("exai_gateway_calls_total"),
        errors=rate_sum_or_zero(
            "exai_gateway_calls_total",
            ['exai_outcome=~"error|timeout|rejected"'],
            zero_from="exai_gateway_calls_total",
        ),
        mean_s=mean("exai_gateway_call_duration_seconds"),
        volume=(
            f"{rate_sum('http_server_request_body_size_bytes_sum', backends)}\n+\n"
            f"{rate_sum('http_server_response_body_size_bytes_sum', backends)}"
        ),
        volume_title="payload bytes/s",
        volume_unit="Bps",
        volume_what=(
            "WebSocket frames are not metered; this is the HTTP body bytes the gateway's"
            " calls exchange with provider-proxy and storage-adapter (a streamed answer has"
            " no Content-Length and is not counted)."
        ),
    )


COMPONENTS = (
    _websocket(),
    _store(
        "Redis",
        REDIS_SPANS,
        "commands the storage adapter sends to its cache (redis client spans)",
        _storage_bytes("http_server_response_body_size_bytes_sum", "GET"),
        "bytes read/s",
        "The redis instrumentation records no sizes; reads are answered from the cache"
        " first, so this is the conversation bytes the storage adapter returns.",
    ),
    _store(
        "Supabase (durable store)",
        SQL_SPANS,
        "statements the storage adapter runs on its durable store (SQL client spans)",
        _storage_bytes("http_server_request_body_size_bytes_sum", "POST"),
        "bytes written/s",
        "Writes go to the durable store first; this is the message bytes the storage"
        " adapter receives to store.",
    ),
    _provider("Kimi", "kimi"),
    _provider("GLM", "glm"),
)


def component_cards(component: Component) -> list[stat.Panel]:
    name = component.name
    return [
        stat_panel(
            f"{name}: events/s",
            f"Rate of {component.what}.",
            prom(component.events, "events/s"),
            unit="reqps",
            span=6,
            sparkline=True,
        ),
        stat_panel(
            f"{name}: errors/s",
            f"Rate of failed {component.what}; 0 when none fail.",
            prom(component.errors, "errors/s"),
            unit="reqps",
            steps=((None, "green"), (0.001, "red")),
            span=6,
            sparkline=True,
        ),
        stat_panel(
            f"{name}: average response time",
            f"Mean duration of {component.what}.",
            prom(component.mean_s, "mean"),
            unit="s",
            span=6,
            sparkline=True,
        ),
        stat_panel(
            f"{name}: {component.volume_title}",
            component.volume_what,
            prom(component.volume, component.volume_title),
            unit=component.volume_unit,
            span=6,
            sparkline=True,
        ),
    ]


def overview() -> Dashboard:
    services = [
        timeseries_panel(
            "Requests per second by service",
            "Server spans per second (all spans, before sampling).",
            [prom(rate_sum(CALLS, SERVER, labels=["service_name"]), "{{service_name}}")],
            unit="reqps",
        ),
        timeseries_panel(
            "Error ratio by service",
            "Share of server spans with status ERROR; 0 (not No data) when nothing fails.",
            [prom(ratio(CALLS, [ERROR], [SERVER], labels=["service_name"]), "{{service_name}}")],
            unit="percentunit",
        ),
        latency_panel(
            "p95 latency by service",
            "95th percentile of server span durations (all spans).",
            plotted=quantile(0.95, LATENCY, SERVER, labels=["service_name"]),
            exemplars=quantile(0.95, KEPT_LATENCY, SERVER, labels=["service_name"]),
            legend="{{service_name}}",
        ),
    ]

    gateway = [
        stat_panel(
            "Active WebSocket connections",
            "Open WebSocket connections, native and MCP.",
            prom("sum(exai_gateway_connections)", "connections"),
        ),
        stat_panel(
            "Calls in flight",
            "Tool calls running now, across all sessions.",
            prom("sum(exai_gateway_inflight)", "in flight"),
        ),
        stat_panel(
            "Availability (1 h)",
            "Share of gateway calls that did not end in error, timeout or refusal (SLO 99.9 %).",
            prom("1 - exai:gateway_call_errors:ratio_rate1h", "availability"),
            unit="percentunit",
            steps=((None, "red"), (0.99, "orange"), (0.999, "green")),
            decimals=3,
        ),
        stat_panel(
            "Calls within 5 s (1 h)",
            "Share of successful gateway calls that finished within 5 s (SLO 99 %).",
            prom("1 - exai:gateway_call_slow:ratio_rate1h", "within 5 s"),
            unit="percentunit",
            steps=((None, "red"), (0.95, "orange"), (0.99, "green")),
            decimals=2,
        ),
        stat_panel(
            "Cache hit ratio (1 h)",
            "Conversation reads answered by the cache.",
            prom(
                ratio("exai_storage_cache_lookups_total", ['exai_cache_result="hit"'], window="1h"),
                "hit ratio",
            ),
            unit="percentunit",
            steps=((None, "orange"), (0.5, "green")),
            decimals=1,
        ),
        stat_panel(
            "LLM spend (24 h)",
            "Provider cost over the last 24 hours (price table in provider-proxy config).",
            prom("sum(increase(exai_provider_cost_total[24h]))", "USD"),
            unit="currencyUSD",
            decimals=2,
        ),
        timeseries_panel(
            "WebSocket connections by protocol",
            "exai.gateway.connections by exai.protocol (native | mcp).",
            [prom("sum by (exai_protocol) (exai_gateway_connections)", "{{exai_protocol}}")],
        ),
        timeseries_panel(
            "Gateway calls by tool and outcome",
            "Tool calls per second; outcome is ok | error | client_error | cancelled"
            " | timeout | rejected.",
            [
                prom(
                    rate_sum("exai_gateway_calls_total", labels=["exai_tool", "exai_outcome"]),
                    "{{exai_tool}} {{exai_outcome}}",
                )
            ],
            unit="reqps",
        ),
        timeseries_panel(
            "Gateway call p95 by tool",
            "95th percentile of tool call duration, end to end at the gateway.",
            [
                prom(
                    quantile(
                        0.95, "exai_gateway_call_duration_seconds_bucket", labels=["exai_tool"]
                    ),
                    "{{exai_tool}}",
                )
            ],
            unit="s",
        ),
    ]

    cards = [panel for component in COMPONENTS for panel in component_cards(component)]

    event_log = [
        logs_panel(
            "Live event log",
            "Log lines of every EXAI service (Loki, compose stack), newest first; filtered by"
            " the correlation_id box when it is set. Open a line for its trace.",
            logql(
                f'{{service_name=~"{EXAI_SERVICES}"}}'
                ' | exai_correlation_id=~"${correlation_id:regex}.*"'
            ),
            span=16,
        ),
        prom_table_panel(
            "Recent events (5 min)",
            "Where there is no Loki: server spans of the last 5 minutes by service, operation"
            " and status, busiest first.",
            prom(
                "sort_desc(\n  sum by (service_name, span_name, status_code) "
                f"(increase({CALLS}{{{SERVER}}}[5m])) > 0\n)",
                instant=True,
            ),
            span=8,
            height=10,
        ),
    ]

    follow = [
        text_panel("How to follow a request", FOLLOW_A_REQUEST, height=9),
        trace_table_panel(
            "Traces for correlation_id",
            "TraceQL search in Tempo for the correlation ID typed at the top.",
            traceql('{ span.exai.correlation_id = "$correlation_id" }'),
        ),
    ]

    builder = base(
        "exai-overview",
        "EXAI overview",
        "RED per service, gateway, component cards, live event log; follow a request.",
    ).with_variable(
        dash.TextBoxVariable("correlation_id")
        .label("correlation_id")
        .description("A correlation ID returned by the gateway (field or X-Correlation-ID).")
    )
    return with_rows(
        builder,
        [
            ("Services (RED from span metrics)", services),
            ("Gateway", gateway),
            ("Components: WebSocket, Redis, durable store, Kimi, GLM", cards),
            ("Live event log", event_log),
            ("Follow a request", follow),
        ],
    )
