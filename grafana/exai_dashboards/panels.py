"""One helper per panel kind; each takes what varies and fixes the house style.

Datasources are referenced by the fixed UIDs provisioned in
grafana/provisioning/datasources/datasources.yaml.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from grafana_foundation_sdk.builders import (
    common,
    heatmap,
    logs,
    loki,
    prometheus,
    stat,
    statetimeline,
    table,
    tempo,
    text,
    timeseries,
)
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models.common import (
    BigValueGraphMode,
    LegendDisplayMode,
    LegendPlacement,
    LogsSortOrder,
    SortOrder,
    TooltipDisplayMode,
    VisibilityMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardLinkType,
    DashboardSpecialValueMapOptions,
    DataSourceRef,
    DynamicConfigValue,
    SpecialValueMap,
    SpecialValueMatch,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMapping,
    ValueMappingResult,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat
from grafana_foundation_sdk.models.text import TextMode

PROMETHEUS = DataSourceRef(type_val="prometheus", uid="prometheus")
TEMPO = DataSourceRef(type_val="tempo", uid="tempo")
LOKI = DataSourceRef(type_val="loki", uid="loki")
ALERTMANAGER = DataSourceRef(type_val="alertmanager", uid="alertmanager")

Steps = Sequence[tuple[float | None, str]]

# What a ratio shows when its denominator is 0 (0/0 is NaN: no calls in the window) and
# what a panel shows with no series at all. Both are words, not a number that would lie:
# an idle system is neither 0 % nor 100 % available.
NO_TRAFFIC = "no traffic"

# ----------------------------------------------------------------------------- targets


def prom(
    expr: str,
    legend: str = "__auto",
    *,
    ref: str = "A",
    exemplar: bool = False,
    instant: bool = False,
    heatmap_format: bool = False,
) -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref)
    query = query.datasource(PROMETHEUS)
    if exemplar:
        query = query.exemplar(True)
    if instant:
        query = query.instant().format(PromQueryFormat.TABLE)
    if heatmap_format:
        query = query.format(PromQueryFormat.HEATMAP)
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


def logql(expr: str, *, ref: str = "A") -> loki.Dataquery:
    return loki.Dataquery().expr(expr).ref_id(ref).datasource(LOKI)


def thresholds(steps: Steps) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


def value_mappings(
    *, nan: str | None = None, values: Mapping[str, tuple[str, str]] | None = None
) -> list[ValueMapping]:
    """NaN shown as the word `nan`; each of `values` (a number as text) as (text, colour)."""
    mappings: list[ValueMapping] = []
    if nan is not None:
        mappings.append(
            SpecialValueMap(
                options=DashboardSpecialValueMapOptions(
                    match=SpecialValueMatch.NA_N, result=ValueMappingResult(text=nan)
                )
            )
        )
    if values:
        mappings.append(
            ValueMap(
                options={
                    value: ValueMappingResult(text=text, color=color)
                    for value, (text, color) in values.items()
                }
            )
        )
    return mappings


# ----------------------------------------------------------------------------- panels


def timeseries_panel(
    title: str,
    description: str,
    queries: Sequence[prometheus.Dataquery],
    *,
    unit: str = "short",
    span: int = 8,
    height: int = 8,
    steps: Steps | None = None,
    no_value: str | None = None,
    nan: str | None = None,
) -> timeseries.Panel:
    """`no_value` / `nan`: the words shown (tooltip, legend) when there are no series or a
    ratio is 0/0; set them where a gap would be read as "broken"."""
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
    if steps is not None:
        panel = panel.thresholds(thresholds(steps))
    if no_value is not None:
        panel = panel.no_value(no_value)
    if nan is not None:
        panel = panel.mappings(value_mappings(nan=nan))
    for query in queries:
        panel = panel.with_target(query)
    return panel


def latency_panel(
    title: str,
    description: str,
    *,
    plotted: str,
    exemplars: str,
    legend: str,
    span: int = 8,
    height: int = 8,
) -> timeseries.Panel:
    """A latency quantile from the all-spans histogram (exact), with exemplar dots from
    the same quantile over the kept spans: every dot opens a trace that was stored.
    The kept series itself is hidden (tail sampling biases it towards slow and failed
    calls); its exemplars still show, as Grafana draws them from their own frame."""
    hidden = DynamicConfigValue(
        id_val="custom.hideFrom", value={"legend": True, "tooltip": True, "viz": True}
    )
    return timeseries_panel(
        title,
        description + " Exemplar dots link to kept traces.",
        [prom(plotted, legend), prom(exemplars, legend, ref="B", exemplar=True)],
        unit="s",
        span=span,
        height=height,
    ).override_by_query("B", [hidden])


def stat_panel(
    title: str,
    description: str,
    query: prometheus.Dataquery,
    *,
    unit: str = "short",
    steps: Steps = ((None, "green"),),
    decimals: int | None = None,
    span: int = 4,
    height: int = 4,
    sparkline: bool = False,
    no_value: str | None = None,
    nan: str | None = None,
    values: Mapping[str, tuple[str, str]] | None = None,
) -> stat.Panel:
    """`no_value`: shown when the query has no series; `nan`: shown for 0/0 (a ratio over
    a window without calls); `values`: fixed values shown as (text, colour), e.g. the -1
    a card's query returns for a component that is not configured."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .with_target(query)
        .unit(unit)
        .thresholds(thresholds(steps))
        .graph_mode(BigValueGraphMode.AREA if sparkline else BigValueGraphMode.NONE)
        .span(span)
        .height(height)
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    if no_value is not None:
        panel = panel.no_value(no_value)
    if nan is not None or values:
        panel = panel.mappings(value_mappings(nan=nan, values=values))
    return panel


def state_timeline_panel(
    title: str,
    description: str,
    query: prometheus.Dataquery,
    states: Mapping[str, tuple[str, str]],
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
        .thresholds(thresholds(((None, "green"),)))
        .show_value(VisibilityMode.NEVER)
        .span(span)
        .height(height)
    )


def heatmap_panel(
    title: str, description: str, query: prometheus.Dataquery, *, span: int = 12, height: int = 8
) -> heatmap.Panel:
    """Prometheus buckets drawn as they are (no re-bucketing): the query must use
    ``format: heatmap`` (Grafana turns the cumulative `le` buckets into per-bucket counts)
    and a per-second ``rate`` summed by ``le``. Not ``increase(…[$__rate_interval])``:
    that window is about 4 query steps long, so consecutive cells overlap and every call
    is counted about 4 times."""
    return (
        heatmap.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .with_target(query)
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit("s"))
        .cell_values(heatmap.CellValues().unit("reqps"))
        .color(heatmap.HeatmapColorOptions().scheme("Oranges").steps(64))
        .show_legend()
        .span(span)
        .height(height)
    )


def prom_table_panel(
    title: str, description: str, query: prometheus.Dataquery, *, span: int = 12, height: int = 8
) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .with_target(query)
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


def logs_panel(
    title: str, description: str, query: loki.Dataquery, *, span: int = 24, height: int = 10
) -> logs.Panel:
    return (
        logs.Panel()
        .title(title)
        .description(description)
        .datasource(LOKI)
        .with_target(query)
        .show_time(True)
        .wrap_log_message(True)
        .enable_log_details(True)
        .sort_order(LogsSortOrder.DESCENDING)
        .span(span)
        .height(height)
    )


def alert_list_panel(
    title: str, description: str, *, span: int = 24, height: int = 8, label_filter: str = ""
) -> dash.Panel:
    """Grafana's alert list, showing the Prometheus-evaluated rules (firing and pending);
    `label_filter` keeps the instances matching it (`{severity!="info"}`).

    The SDK has no builder for this core panel, so the generic one sets its type and
    options."""
    return (
        dash.Panel()
        .type("alertlist")
        .title(title)
        .description(description)
        .options(
            {
                "viewMode": "list",
                "groupMode": "default",
                "groupBy": [],
                "maxItems": 50,
                "sortOrder": 1,
                "dashboardAlerts": False,
                "alertName": "",
                "alertInstanceLabelFilter": label_filter,
                "datasource": "Prometheus",
                "showInstances": True,
                "showInactiveAlerts": False,
                "stateFilter": {
                    "firing": True,
                    "pending": True,
                    "recovering": True,
                    "noData": False,
                    "normal": False,
                    "error": True,
                },
            }
        )
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


# ----------------------------------------------------------------------------- variables


def label_values_variable(
    name: str, label: str, query: str, description: str
) -> dash.QueryVariable:
    """A Prometheus `label_values(...)` variable with an All option (matching any value)."""
    return (
        dash.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(PROMETHEUS)
        .query({"query": query, "refId": f"{name}-variable"})
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .include_all(True)
        .all_value(".*")
        .current(VariableOption(selected=True, text="All", value="$__all"))
    )


def env_variable(query: str) -> dash.QueryVariable:
    """`$env`: deployment.environment.name, All by default (`.*`, which also matches
    series that carry no environment, such as the collector's service graph)."""
    return label_values_variable(
        "env", "environment", query, "deployment.environment.name of the services."
    )


def dashboard_links() -> dash.DashboardLink:
    """A drop-down to every EXAI dashboard, keeping the time range and variables."""
    return (
        dash.DashboardLink("EXAI dashboards")
        .type(DashboardLinkType.DASHBOARDS)
        .tags(["exai"])
        .as_dropdown(True)
        .keep_time(True)
        .include_vars(True)
    )
