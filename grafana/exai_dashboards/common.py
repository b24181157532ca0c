"""What every EXAI dashboard shares: header, rows of panels, stable panel ids."""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models.dashboard import (
    Dashboard,
    FieldConfig,
    FieldConfigSource,
    Panel,
)

from exai_dashboards.panels import LOKI, TEMPO, dashboard_links, row

Rows = Sequence[tuple[str, Sequence[cogbuilder.Builder[Panel]]]]


def base(uid: str, title: str, description: str) -> dash.Dashboard:
    return (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["exai", "generated"])
        .editable()
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .link(dashboard_links())
    )


def with_rows(
    builder: dash.Dashboard, rows: Rows, *, explore_service: str | None = None
) -> Dashboard:
    """The dashboard with its rows of panels. With `explore_service` (a service.name
    regex, may use template variables), every Prometheus panel gets data links to the
    traces (Tempo) and logs (Loki) of its service over the panel's time range."""
    for title, panels in rows:
        builder = builder.with_row(row(title))
        for panel in panels:
            builder = builder.with_panel(panel)
    board = with_panel_ids(builder.build())
    if explore_service is not None:
        for panel in board.panels or []:
            if isinstance(panel, Panel):
                _add_explore_links(panel, explore_service)
    return board


# A panel's own service, from what its queries count (the gateway's, the proxy's or the
# storage adapter's instruments); a panel drawing one series per service links each
# series to its own service (the `service_name` label of the series under the cursor).
_SERVICE_OF_METRIC = (
    ('service_name="storage-adapter"', "storage-adapter"),
    ("exai_storage_", "storage-adapter"),
    ("exai_gateway_", "ws-gateway"),
    ("exai_provider_", "provider-proxy"),
    ("gen_ai_", "provider-proxy"),
)


def _panel_service(panel: Panel, default: str) -> str:
    targets = [t for t in panel.targets or [] if getattr(t, "expr", None)]
    if not targets:
        return default
    if any("{{service_name}}" in (getattr(t, "legend_format", "") or "") for t in targets):
        return "${__field.labels.service_name}"
    exprs = " ".join(str(t.expr) for t in targets)
    for needle, service in _SERVICE_OF_METRIC:
        if needle in exprs:
            return service
    return default


def explore_links(service: str) -> list[dict[str, object]]:
    """Grafana data links that open Explore on the same time range: the service's traces
    (TraceQL on Tempo) and its log lines (Loki)."""
    return [
        {
            "title": f"Traces of {service}",
            "url": "",
            "internal": {
                "datasourceUid": TEMPO.uid,
                "datasourceName": "Tempo",
                "query": {
                    "refId": "A",
                    "datasource": {"type": TEMPO.type_val, "uid": TEMPO.uid},
                    "queryType": "traceql",
                    "query": f'{{ resource.service.name =~ "{service}" }}',
                    "limit": 20,
                },
            },
        },
        {
            "title": f"Logs of {service}",
            "url": "",
            "internal": {
                "datasourceUid": LOKI.uid,
                "datasourceName": "Loki",
                "query": {
                    "refId": "A",
                    "datasource": {"type": LOKI.type_val, "uid": LOKI.uid},
                    "expr": f'{{service_name=~"{service}"}}',
                },
            },
        },
    ]


def _add_explore_links(panel: Panel, default_service: str) -> None:
    if panel.datasource is None or panel.datasource.type_val != "prometheus":
        return
    if panel.field_config is None:
        panel.field_config = FieldConfigSource()
    if panel.field_config.defaults is None:
        panel.field_config.defaults = FieldConfig()
    panel.field_config.defaults.links = explore_links(  # type: ignore[assignment]
        _panel_service(panel, default_service)
    )


def with_panel_ids(board: Dashboard) -> Dashboard:
    """Number the panels 1..n in layout order: stable ids keep links to panels valid."""
    for number, panel in enumerate(board.panels or [], start=1):
        panel.id_val = number
    return board
