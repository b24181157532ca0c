"""What every EXAI dashboard shares: header, rows of panels, stable panel ids."""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel

from exai_dashboards.panels import dashboard_links, row

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


def with_rows(builder: dash.Dashboard, rows: Rows) -> Dashboard:
    for title, panels in rows:
        builder = builder.with_row(row(title))
        for panel in panels:
            builder = builder.with_panel(panel)
    return with_panel_ids(builder.build())


def with_panel_ids(board: Dashboard) -> Dashboard:
    """Number the panels 1..n in layout order: stable ids keep links to panels valid."""
    for number, panel in enumerate(board.panels or [], start=1):
        panel.id_val = number
    return board
