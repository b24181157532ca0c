"""(a) EXAI overview: RED per service, the gateway, one card per component (what the old
HTML monitoring page showed), the live event log, and how to follow a request."""

from __future__ import annotations

from dataclasses import dataclass, replace

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat
from grafana_foundation_sdk.models.dashboard import Dashboard

from exai_dashboards.canary import canary_panels
from exai_dashboards.common import base, with_rows
from exai_dashboards.panels import (
    NO_TRAFFIC,
    env_variable,
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
    DURABLE,
    DURABLE_SYSTEMS,
    ENV,
    ERROR,
    KEPT_LATENCY,
    LATENCY,
    REDIS,
    SERVER,
    STORE_SERVICE,
    live,
    mean,
    quantile,
    rate_sum,
    rate_sum_or_zero,
    ratio,
    sel,
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

# A card's query returns -1 for a component its service does not use (no Redis under
# `make run`): shown as "not configured", not as "No data" or a 0 that looks healthy.
NOT_CONFIGURED = {"-1": ("not configured", "text")}
# The gauge every service's SDK reports on each export: the service is up and exporting.
EXPORTING = "otel_sdk_processor_span_queue_capacity"
GATEWAY = 'service_name="ws-gateway"'


@dataclass(frozen=True)
class Component:
    """One card of the old monitoring page: events, errors, average time, a volume."""

    name: str
    what: str
    events: str
    errors: str
    mean_s: str
    volume: str
    volume_title: str
    volume_unit: str
    volume_what: str
    mean_what: str = ""
    reporter: str = "its service"
    # Whether the queries still need the idle values of `_idle` (the stores' cards have
    # their own: 0 or "not configured").
    idle_values: bool = True


def _exporting(service: str) -> str:
    """The running processes of `service` (one series when any exports): the base of the
    idle values below."""
    matcher = f'service_name="{service}"'
    return f"sum({live(EXPORTING + sel(ENV, matcher))})"


def _idle(expr: str, service: str, *, mean: bool = False) -> str:
    """`expr`, or while `service` runs but `expr` has no series (a process restarted a
    minute ago has not yet made the calls that create them): 0 for a rate, NaN for a mean
    (shown as "no traffic"). Nothing at all only when the service sends nothing."""
    fill = "NaN" if mean else "0"
    return f"(\n  {expr}\n)\nor on ()\n{_exporting(service)} * {fill}"


def _provider(name: str, provider: str) -> Component:
    match = f'gen_ai_provider_name="{provider}"'
    return Component(
        name=name,
        what=f"logical calls to {name} through provider-proxy (after retries)",
        events=rate_sum("exai_provider_requests_total", match, ENV),
        errors=rate_sum_or_zero(
            "exai_provider_requests_total",
            [match, ENV, 'exai_outcome="error"'],
            zero_from="exai_provider_requests_total",
            zero_matchers=[match, ENV],
        ),
        # Calls refused by an open circuit breaker fail in microseconds without reaching
        # the provider; counted in, they would pull the average DOWN during an outage.
        mean_s=mean(
            "gen_ai_client_operation_duration_seconds", match, ENV, 'error_type!="circuit_open"'
        ),
        mean_what=" Calls refused by the open circuit breaker (sent nowhere) are left out.",
        volume=rate_sum(
            "exai_provider_tokens_total", match, ENV, 'exai_token_type=~"input|output"'
        ),
        volume_title="tokens/s",
        volume_unit="suffix: tok/s",
        volume_what=(
            "An LLM API's payload is metered in tokens (input + output), which is also what"
            " it costs; the httpx instrumentation records no client body sizes."
        ),
        reporter="provider-proxy",
    )


def _configured(dependency: str, systems: str) -> tuple[str, str]:
    """(0 while the storage adapter uses `systems` for `dependency`; -1 while it reports
    its dependencies and `systems` is not among them)."""
    kind = f'exai_dependency="{dependency}"'
    system = f'db_system_name=~"{systems}"'
    configured = f"exai_storage_dependency_configured{sel(ENV, kind, system)}"
    reporting = f"exai_storage_dependency_configured{sel(ENV)}"
    zero = f"max({live(configured)}) * 0"
    missing = f"-1 * (max({live(reporting)}) unless on () max({live(configured)}))"
    return zero, missing


def _or_state(expr: str, dependency: str, systems: str) -> str:
    """`expr`, else 0 when the component is configured but idle, else -1 when it is not
    configured (NOT_CONFIGURED). "Not configured" wins: a cache that is not Redis has
    lookups too."""
    zero, missing = _configured(dependency, systems)
    return f"(\n  {missing}\n)\nor on ()\n(\n  {expr}\n)\nor on ()\n{zero}"


def _store(
    name: str,
    dependency: str,
    systems: str,
    system: str,
    what: str,
    volume: str,
    volume_title: str,
    volume_unit: str,
    why: str,
) -> Component:
    matchers = [STORE_SERVICE, ENV, CLIENT, system]
    return Component(
        name=name,
        what=what,
        events=_or_state(rate_sum(CALLS, *matchers), dependency, systems),
        errors=_or_state(
            rate_sum_or_zero(CALLS, [*matchers, ERROR], zero_from=CALLS, zero_matchers=matchers),
            dependency,
            systems,
        ),
        mean_s=_or_state(mean("traces_spanmetrics_latency", *matchers), dependency, systems),
        volume=_or_state(volume, dependency, systems),
        volume_title=volume_title,
        volume_unit=volume_unit,
        volume_what=why,
        reporter="storage-adapter",
        idle_values=False,
    )


def _websocket() -> Component:
    backends = sel('service_name=~"provider-proxy|storage-adapter"', ENV)
    return Component(
        name="WebSocket",
        what="tool calls on the gateway's WebSocket (native and MCP)",
        events=rate_sum("exai_gateway_calls_total", ENV),
        errors=rate_sum_or_zero(
            "exai_gateway_calls_total",
            [ENV, 'exai_outcome=~"error|timeout|rejected"'],
            zero_from="exai_gateway_calls_total",
            zero_matchers=[ENV],
        ),
        mean_s=mean("exai_gateway_call_duration_seconds", ENV),
        volume=(
            f"sum(rate(http_server_request_body_size_bytes_sum{backends}[$__rate_interval]))\n+\n"
            f"sum(rate(http_server_response_body_size_bytes_sum{backends}[$__rate_interval]))"
        ),
        volume_title="backend HTTP bytes/s",
        volume_unit="Bps",
        volume_what=(
            "Not WebSocket frames (they are not metered): the HTTP body bytes provider-proxy"
            " and storage-adapter receive and send (a streamed answer has no Content-Length"
            " and is not counted)."
        ),
        reporter="ws-gateway",
    )


COMPONENTS = (
    _websocket(),
    _store(
        "Redis",
        "cache",
        "redis",
        REDIS,
        "commands the storage adapter sends to Redis (client spans with db.system.name redis)",
        ratio(
            "exai_storage_cache_lookups_total",
            ['exai_cache_result="hit"'],
            [ENV],
        ),
        "cache hit ratio",
        "percentunit",
        "Share of conversation reads the cache answered (exai.storage.cache.lookups);"
        " the redis instrumentation records no byte sizes.",
    ),
    _store(
        "Durable store",
        "durable",
        DURABLE_SYSTEMS,
        DURABLE,
        "statements and requests the storage adapter sends to its durable store (Postgres,"
        " Supabase REST or SQLite: client spans with that db.system.name)",
        rate_sum(
            "http_server_request_body_size_bytes_sum",
            STORE_SERVICE,
            ENV,
            'http_request_method="POST"',
        ),
        "bytes received to store/s",
        "Bps",
        "HTTP body bytes of the writes storage-adapter receives (what it then stores);"
        " the database clients record no byte sizes.",
    ),
    _provider("Kimi", "kimi"),
    _provider("GLM", "glm"),
)


def component_cards(component: Component) -> list[stat.Panel]:
    name = component.name
    if component.idle_values:
        component = replace(
            component,
            events=_idle(component.events, component.reporter),
            errors=_idle(component.errors, component.reporter),
            mean_s=_idle(component.mean_s, component.reporter, mean=True),
            volume=_idle(component.volume, component.reporter),
        )
    # No series at all: the service behind the card sends nothing (down, or its
    # telemetry does not arrive). NaN: a ratio or mean over a window without calls.
    states = {
        "no_value": f"no data from {component.reporter}",
        "nan": NO_TRAFFIC,
        "values": NOT_CONFIGURED,
    }
    return [
        stat_panel(
            f"{name}: events/s",
            f"Rate of {component.what}.",
            prom(component.events, "events/s"),
            unit="reqps",
            span=6,
            sparkline=True,
            **states,
        ),
        stat_panel(
            f"{name}: errors/s",
            f"Rate of failed {component.what}; 0 when none fail.",
            prom(component.errors, "errors/s"),
            unit="reqps",
            steps=((None, "green"), (0.001, "red")),
            span=6,
            sparkline=True,
            **states,
        ),
        stat_panel(
            f"{name}: average response time",
            f"Mean duration of {component.what}.{component.mean_what}",
            prom(component.mean_s, "mean"),
            unit="s",
            span=6,
            sparkline=True,
            **states,
        ),
        stat_panel(
            f"{name}: {component.volume_title}",
            component.volume_what,
            prom(component.volume, component.volume_title),
            unit=component.volume_unit,
            span=6,
            sparkline=True,
            **states,
        ),
    ]


def overview() -> Dashboard:
    services = [
        timeseries_panel(
            "Requests per second by service",
            "Server spans per second (all spans, before sampling).",
            [prom(rate_sum(CALLS, SERVER, ENV, labels=["service_name"]), "{{service_name}}")],
            unit="reqps",
        ),
        timeseries_panel(
            "Error ratio by service",
            "Share of server spans with status ERROR; 0 (not No data) when nothing fails,"
            " no traffic when a service handled no request in the window.",
            [
                prom(
                    ratio(CALLS, [ERROR], [SERVER, ENV], labels=["service_name"]),
                    "{{service_name}}",
                )
            ],
            unit="percentunit",
            nan=NO_TRAFFIC,
            no_value=NO_TRAFFIC,
        ),
        latency_panel(
            "p95 latency by service",
            "95th percentile of server span durations (all spans).",
            plotted=quantile(0.95, LATENCY, SERVER, ENV, labels=["service_name"]),
            exemplars=quantile(0.95, KEPT_LATENCY, SERVER, ENV, labels=["service_name"]),
            legend="{{service_name}}",
        ),
    ]

    # Gauges count running processes only (`live`): a restarted gateway's old process
    # keeps its last values in Prometheus for 5 minutes. 0, not No data, while the
    # gateway exports but has had no connection yet (the gauge's series starts with the
    # first one).
    gateway_up = f"sum({live(f'{EXPORTING}{sel(ENV, GATEWAY)}')}) * 0"
    gateway = [
        stat_panel(
            "Active WebSocket connections",
            "Open WebSocket connections, native and MCP, of the running gateway processes.",
            prom(
                f"sum({live(f'exai_gateway_connections{sel(ENV)}')})\nor on ()\n{gateway_up}",
                "connections",
            ),
            no_value="no data from ws-gateway",
        ),
        stat_panel(
            "Calls in flight",
            "Tool calls running now, across all sessions of the running gateway processes.",
            prom(
                f"sum({live(f'exai_gateway_inflight{sel(ENV)}')})\nor on ()\n{gateway_up}",
                "in flight",
            ),
            no_value="no data from ws-gateway",
        ),
        stat_panel(
            "Availability (1 h)",
            "Share of gateway calls that did not end in error, timeout or refusal (SLO 99.9 %);"
            " no traffic when there was no call in the hour.",
            prom(f"1 - exai:gateway_call_errors:ratio_rate1h{sel(ENV)}", "availability"),
            unit="percentunit",
            steps=((None, "red"), (0.99, "orange"), (0.999, "green")),
            decimals=3,
            no_value=NO_TRAFFIC,
            nan=NO_TRAFFIC,
        ),
        stat_panel(
            "First chunk within objective (1 h)",
            "Share of successful streamed calls whose first chunk came within the tool's"
            " threshold (EXAI_SLO_FIRST_CHUNK_S; SLO 99 %); no traffic without streamed calls.",
            prom(
                "1 - exai:gateway_latency_objective_missed:ratio_rate1h"
                + sel(ENV, 'exai_slo_indicator="first_chunk"'),
                "within objective",
            ),
            unit="percentunit",
            steps=((None, "red"), (0.95, "orange"), (0.99, "green")),
            decimals=2,
            no_value=NO_TRAFFIC,
            nan=NO_TRAFFIC,
        ),
        stat_panel(
            "Cache hit ratio (1 h)",
            "Conversation reads answered by the cache; no traffic without reads.",
            prom(
                ratio(
                    "exai_storage_cache_lookups_total",
                    ['exai_cache_result="hit"'],
                    [ENV],
                    window="1h",
                ),
                "hit ratio",
            ),
            unit="percentunit",
            steps=((None, "orange"), (0.5, "green")),
            decimals=1,
            no_value=NO_TRAFFIC,
            nan=NO_TRAFFIC,
        ),
        stat_panel(
            "LLM spend (24 h)",
            "Provider cost over the last 24 hours (price table in provider-proxy config).",
            prom(f"sum(increase(exai_provider_cost_total{sel(ENV)}[24h]))", "USD"),
            unit="currencyUSD",
            decimals=2,
            no_value="no data from provider-proxy",
        ),
        timeseries_panel(
            "WebSocket connections by protocol",
            "exai.gateway.connections by exai.protocol (native | mcp), running processes only.",
            [
                prom(
                    f"sum by (exai_protocol) ({live(f'exai_gateway_connections{sel(ENV)}')})",
                    "{{exai_protocol}}",
                )
            ],
            no_value="no connection",
        ),
        timeseries_panel(
            "Gateway calls by tool and outcome",
            "Tool calls per second; outcome is ok | error | client_error | cancelled"
            " | timeout | rejected.",
            [
                prom(
                    rate_sum("exai_gateway_calls_total", ENV, labels=["exai_tool", "exai_outcome"]),
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
                        0.95,
                        "exai_gateway_call_duration_seconds_bucket",
                        ENV,
                        labels=["exai_tool"],
                    ),
                    "{{exai_tool}}",
                )
            ],
            unit="s",
            nan=NO_TRAFFIC,
        ),
    ]

    cards = [panel for component in COMPONENTS for panel in component_cards(component)]

    event_log = [
        logs_panel(
            "Live event log",
            "Log lines of every EXAI service (Loki, compose stack), newest first; filtered by"
            " the correlation_id box when it is set. Open a line for its trace.",
            logql(
                # The environment as a filter, not in the stream selector: it works
                # whether Loki keeps deployment.environment.name as an index label or as
                # structured metadata.
                f'{{service_name=~"{EXAI_SERVICES}"}}'
                ' | deployment_environment_name=~"$env"'
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
                f"(increase({CALLS}{sel(SERVER, ENV)}[5m])) > 0\n)",
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

    builder = (
        base(
            "exai-overview",
            "EXAI overview",
            "RED per service, gateway, component cards, live event log; follow a request.",
        )
        .with_variable(env_variable(f"label_values({EXPORTING}, deployment_environment_name)"))
        .with_variable(
            dash.TextBoxVariable("correlation_id")
            .label("correlation_id")
            .description("A correlation ID returned by the gateway (field or X-Correlation-ID).")
        )
    )
    return with_rows(
        builder,
        [
            ("Services (RED from span metrics)", services),
            ("Gateway", gateway),
            ("Canary: the gateway as a client sees it", canary_panels()),
            ("Components: WebSocket, Redis, durable store, Kimi, GLM", cards),
            ("Live event log", event_log),
            ("Follow a request", follow),
        ],
        explore_service=EXAI_SERVICES,
    )
