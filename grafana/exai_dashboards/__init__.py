"""The EXAI Grafana dashboards, generated with grafana-foundation-sdk.

- :mod:`~exai_dashboards.promql` — metric names and PromQL helpers (ratios that say 0,
  not No data, while nothing fails)
- :mod:`~exai_dashboards.panels` — one helper per panel kind
- one module per dashboard: overview, service, llm, pipeline, slo
"""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from exai_dashboards.llm import llm_dashboard
from exai_dashboards.overview import overview
from exai_dashboards.pipeline import pipeline_dashboard
from exai_dashboards.service import service_dashboard
from exai_dashboards.slo import slo_dashboard

DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "exai-overview.json": overview,
    "exai-service.json": service_dashboard,
    "exai-llm.json": llm_dashboard,
    "exai-pipeline.json": pipeline_dashboard,
    "exai-slo.json": slo_dashboard,
}


def render(board: Dashboard) -> str:
    """The dashboard as committed: sorted keys, 2-space indent, final newline."""
    return JSONEncoder(sort_keys=True, indent=2).encode(board) + "\n"


def rendered() -> dict[str, str]:
    return {name: render(factory()) for name, factory in DASHBOARDS.items()}
