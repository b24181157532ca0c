"""Generate the EXAI Grafana dashboards from Python (grafana-foundation-sdk).

    python grafana/generate_dashboards.py           # rewrite grafana/dashboards/*.json
    python grafana/generate_dashboards.py --check   # exit 1 if a committed file is stale

The JSON files are committed so that Grafana's file provisioning (grafana/provisioning/
dashboards/) loads them as they are; tests/unit/test_config_grafana.py checks that they
equal this generator's output.

Metric names are Prometheus' translation of the OTel instruments (prometheus.yml, `otlp:`
with UnderscoreEscapingWithSuffixes): span metrics from the collector
(traces_span_metrics_*), the services' own instruments (exai_*, gen_ai_*), and the
recording rules in deploy/prometheus/rules/.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from grafana_foundation_sdk.builders import (
    common,
    prometheus,
    stat,
    statetimeline,
    table,
    tempo,
    text,
    timeseries,
)
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    TooltipDisplayMode,
    VisibilityMode,
)
from grafana_foundation_sdk.models.dashboard import (
    Dashboard,
    DataSourceRef,
    Panel,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
)
from grafana_foundation_sdk.models.text import TextMode

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"

# Provisioned with fixed UIDs (grafana/provisioning/datasources/datasources.yaml).
PROMETHEUS = DataSourceRef(type_val="prometheus", uid="prometheus")
TEMPO = DataSourceRef(type_val="tempo", uid="tempo")

# Server spans only: one per request a service handled (client spans would count each
# hop twice).
SERVER_SPANS = 'span_kind="SPAN_KIND_SERVER"'
RATE = "$__rate_interval"


# ----------------------------------------------------------------------------- queries


def prom(
    expr: str, legend: str = "__auto", *, ref: str = "A", exemplar: bool = False
) -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref)
    query = query.datasource(PROMETHEUS)
    if exemplar:
        query = query.exemplar(True)
    return query


def traceql(query: str, *, ref: str = "A") -> tempo.TempoQuery:
    return (
        tempo.TempoQuery()
        .query_type("traceql")
        .query(query)
        .limit(20)
        .ref_id(ref)
        .datasource(TEMPO)
    )


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


# ----------------------------------------------------------------------------- panel kinds
# One helper per panel kind; each takes what varies and fixes the house style.


def timeseries_panel(
    title: str,
    description: str,
    queries: Sequence[prometheus.Dataquery],
    *,
    unit: str = "short",
    span: int = 8,
    height: int = 8,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit(unit)
        .span(span)
        .height(height)
        .line_width(1)
        .fill_opacity(10)
        .legend(
            common.VizLegendOptions()
            .display_mode(LegendDisplayMode.LIST)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            common.VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING)
        )
    )
    for query in queries:
        panel = panel.with_target(query)
    return panel


def stat_panel(
    title: str,
    description: str,
    query: prometheus.Dataquery,
    *,
    unit: str = "short",
    steps: Sequence[tuple[float | None, str]] = ((None, "green"),),
    decimals: int | None = None,
    span: int = 4,
    height: int = 4,
) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .with_target(query)
        .unit(unit)
        .thresholds(thresholds(*steps))
        .span(span)
        .height(height)
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


def state_timeline_panel(
    title: str,
    description: str,
    query: prometheus.Dataquery,
    states: dict[str, tuple[str, str]],
    *,
    span: int = 12,
    height: int = 6,
) -> statetimeline.Panel:
    """`states` maps a gauge value to (display text, colour)."""
    mapping = ValueMap(
        options={
            value: ValueMappingResult(text=label, color=color)
            for value, (label, color) in states.items()
        }
    )
    return (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .with_target(query)
        .mappings([mapping])
        .thresholds(thresholds((None, "green")))
        .show_value(VisibilityMode.NEVER)
        .span(span)
        .height(height)
    )


def trace_table_panel(
    title: str, description: str, query: tempo.TempoQuery, *, span: int = 24, height: int = 8
) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(TEMPO)
        .with_target(query)
        .span(span)
        .height(height)
    )


def text_panel(title: str, markdown: str, *, span: int = 24, height: int = 7) -> text.Panel:
    return (
        text.Panel()
        .title(title)
        .content(markdown)
        .mode(TextMode.MARKDOWN)
        .span(span)
        .height(height)
    )


def row(title: str) -> dash.Row:
    return dash.Row(title)


# ----------------------------------------------------------------------------- overview

FOLLOW_A_REQUEST = """\
Every call carries a **correlation ID** (returned to the client as `correlation_id`,
sent downstream as `X-Correlation-ID` and baggage). Every span of every service has it
as the attribute `exai.correlation_id`.

* Paste the ID into the **correlation_id** box at the top of this dashboard: the table
  below lists the matching traces; click a trace ID to open it.
* Or in **Explore → Tempo → TraceQL**: `{ span.exai.correlation_id = "<id>" }`
* From a latency panel, click an **exemplar** dot to jump to the trace behind it.
* Service map: **Explore → Tempo → Service Graph**.

Traces are tail-sampled (errors, retries, fallbacks, open circuits and slow calls are
always kept); the metrics on this dashboard count every call.
"""


def overview() -> Dashboard:
    red_by_service: list[cogbuilder.Builder[Panel]] = [
        timeseries_panel(
            "Requests per second by service",
            "Server spans per second (all spans, before sampling).",
            [
                prom(
                    "sum by (service_name) "
                    f"(rate(traces_span_metrics_calls_total{{{SERVER_SPANS}}}[{RATE}]))",
                    "{{service_name}}",
                )
            ],
            unit="reqps",
        ),
        timeseries_panel(
            "Error ratio by service",
            "Share of server spans with status ERROR.",
            [
                prom(
                    "sum by (service_name) (rate(traces_span_metrics_calls_total"
                    f'{{{SERVER_SPANS}, status_code="STATUS_CODE_ERROR"}}[{RATE}]))'
                    "\n/\nsum by (service_name) "
                    f"(rate(traces_span_metrics_calls_total{{{SERVER_SPANS}}}[{RATE}]))",
                    "{{service_name}}",
                )
            ],
            unit="percentunit",
        ),
        timeseries_panel(
            "p95 latency by service",
            "95th percentile of server span durations; exemplar dots link to traces.",
            [
                prom(
                    "histogram_quantile(0.95, sum by (service_name, le) "
                    f"(rate(traces_span_metrics_duration_seconds_bucket{{{SERVER_SPANS}}}[{RATE}])))",
                    "{{service_name}}",
                    exemplar=True,
                )
            ],
            unit="s",
        ),
    ]

    gateway: list[cogbuilder.Builder[Panel]] = [
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
            "Share of gateway calls that did not end in error or timeout (SLO 99.9 %).",
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
                'sum(rate(exai_storage_cache_lookups_total{exai_cache_result="hit"}[1h]))'
                "\n/\nsum(rate(exai_storage_cache_lookups_total[1h]))",
                "hit ratio",
            ),
            unit="percentunit",
            steps=((None, "orange"), (0.5, "green")),
            decimals=1,
        ),
        stat_panel(
            "LLM spend (24 h)",
            "Provider cost over the last 24 hours (price table in provider-proxy config).",
            prom("sum(increase(exai_provider_cost_USD_total[24h]))", "USD"),
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
                    f"sum by (exai_tool, exai_outcome) (rate(exai_gateway_calls_total[{RATE}]))",
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
                    "histogram_quantile(0.95, sum by (exai_tool, le) "
                    f"(rate(exai_gateway_call_duration_seconds_bucket[{RATE}])))",
                    "{{exai_tool}}",
                )
            ],
            unit="s",
        ),
    ]

    providers: list[cogbuilder.Builder[Panel]] = [
        timeseries_panel(
            "Tokens per second by provider and type",
            "Input, output and cached tokens as the providers report them.",
            [
                prom(
                    "sum by (gen_ai_provider_name, exai_token_type) "
                    f"(rate(exai_provider_tokens_total[{RATE}]))",
                    "{{gen_ai_provider_name}} {{exai_token_type}}",
                )
            ],
            unit="short",
        ),
        timeseries_panel(
            "Spend rate by provider (USD/hour)",
            "Cost per hour at the current rate; the budget alert fires above 5 USD/hour.",
            [
                prom(
                    "sum by (gen_ai_provider_name) "
                    f"(rate(exai_provider_cost_USD_total[{RATE}])) * 3600",
                    "{{gen_ai_provider_name}}",
                )
            ],
            unit="currencyUSD",
        ),
        timeseries_panel(
            "Provider error ratio and retries",
            "Failed upstream requests (after retries) and retry attempts by reason.",
            [
                prom(
                    "exai:provider_request_errors:ratio_rate1m",
                    "{{gen_ai_provider_name}} error ratio",
                ),
                prom(
                    "sum by (gen_ai_provider_name, exai_retry_reason) "
                    f"(rate(exai_provider_retries_total[{RATE}]))",
                    "{{gen_ai_provider_name}} retries: {{exai_retry_reason}}",
                    ref="B",
                ),
            ],
            unit="short",
        ),
        state_timeline_panel(
            "Circuit breaker state",
            "exai.provider.circuit.state per provider: closed, half-open (probing) or open.",
            prom(
                "max by (gen_ai_provider_name) (exai_provider_circuit_state)",
                "{{gen_ai_provider_name}}",
            ),
            {"0": ("closed", "green"), "1": ("half-open", "orange"), "2": ("open", "red")},
        ),
        timeseries_panel(
            "Provider operation p95 by model",
            "gen_ai.client.operation.duration: time to the full answer from the provider.",
            [
                prom(
                    "histogram_quantile(0.95, "
                    "sum by (gen_ai_provider_name, gen_ai_request_model, le) "
                    f"(rate(gen_ai_client_operation_duration_seconds_bucket[{RATE}])))",
                    "{{gen_ai_provider_name}} {{gen_ai_request_model}}",
                )
            ],
            unit="s",
            span=12,
        ),
    ]

    storage: list[cogbuilder.Builder[Panel]] = [
        timeseries_panel(
            "Cache lookups by result",
            "exai.storage.cache.lookups per second: hit | miss | error.",
            [
                prom(
                    f"sum by (exai_cache_result) (rate(exai_storage_cache_lookups_total[{RATE}]))",
                    "{{exai_cache_result}}",
                )
            ],
            unit="ops",
            span=12,
        ),
        state_timeline_panel(
            "Storage dependencies",
            "exai.storage.dependency.up: the cache (Redis) and the durable store.",
            prom(
                "min by (exai_dependency) (exai_storage_dependency_up)",
                "{{exai_dependency}}",
            ),
            {"0": ("down", "red"), "1": ("up", "green")},
        ),
    ]

    builder = (
        dash.Dashboard("EXAI overview")
        .uid("exai-overview")
        .description("RED per service, gateway, providers, storage; follow a request.")
        .tags(["exai", "generated"])
        .editable()
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .with_variable(
            dash.TextBoxVariable("correlation_id")
            .label("correlation_id")
            .description("A correlation ID returned by the gateway (field or X-Correlation-ID).")
        )
    )
    builder = builder.with_row(row("Services (RED from span metrics)"))
    for panel in red_by_service:
        builder = builder.with_panel(panel)
    builder = builder.with_row(row("Gateway"))
    for panel in gateway:
        builder = builder.with_panel(panel)
    builder = builder.with_row(row("Providers"))
    for panel in providers:
        builder = builder.with_panel(panel)
    builder = builder.with_row(row("Storage"))
    for panel in storage:
        builder = builder.with_panel(panel)
    builder = builder.with_row(row("Follow a request"))
    builder = builder.with_panel(text_panel("How to follow a request", FOLLOW_A_REQUEST))
    builder = builder.with_panel(
        trace_table_panel(
            "Traces for correlation_id",
            "TraceQL search in Tempo for the correlation ID typed at the top.",
            traceql('{ span.exai.correlation_id = "$correlation_id" }'),
        )
    )
    return with_panel_ids(builder.build())


def with_panel_ids(board: Dashboard) -> Dashboard:
    """Number the panels 1..n in layout order: stable ids keep links to panels valid."""
    for number, panel in enumerate(board.panels or [], start=1):
        panel.id_val = number
    return board


# ----------------------------------------------------------------------------- output

DASHBOARDS: dict[str, Callable[[], Dashboard]] = {"exai-overview.json": overview}


def render(board: Dashboard) -> str:
    """The dashboard as committed: sorted keys, 2-space indent, final newline."""
    return JSONEncoder(sort_keys=True, indent=2).encode(board) + "\n"


def rendered() -> dict[str, str]:
    return {name: render(factory()) for name, factory in DASHBOARDS.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed file differs")
    args = parser.parse_args(argv)
    stale = []
    for name, content in rendered().items():
        path = DASHBOARDS_DIR / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == content:
            continue
        if args.check:
            stale.append(name)
        else:
            DASHBOARDS_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        names = ", ".join(stale)
        print(f"stale: {names} (run python grafana/generate_dashboards.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
