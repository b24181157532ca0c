"""End-to-end: every Grafana panel query returns data (issue 7, point 6).

Traffic goes through the gateway like a user's: plain, streamed, memory (continuation)
and consensus calls on both providers, intermittent provider errors (retried), then a
provider outage (simulator admin API) long enough for an alert to fire. Then every
Prometheus query of every committed dashboard (grafana/dashboards/*.json, equal to the
generator's output by the unit tests), every template variable's query and every
datasource link's query runs against the real Prometheus with Grafana's variables
substituted, and must return at least one real (non-NaN) value: a panel that would show
"No data" fails here.

Panels on other datasources (Loki, Tempo, the alert list) have no Prometheus query; the
test pins that list, so a new one is a conscious choice.

The dashboards, their queries and the traffic are tests/support/dashboards.py, which the
compose test (tests/compose/test_grafana.py) runs through Grafana itself.
"""

from __future__ import annotations

import asyncio
import math
import time

import pytest
import yaml

from tests.e2e.helpers import Prometheus, Simulator
from tests.support.dashboards import (
    DATASOURCES,
    FAULT_PANELS,
    LOOKBACK_S,
    NOT_PROMETHEUS,
    Query,
    dashboards,
    drive,
    panel_queries,
    panels_not_on_prometheus,
    substitute,
)
from tests.support.stack import RunningStack

pytestmark = pytest.mark.e2e

STEP = "15s"


@pytest.fixture(scope="module")
def traffic(stack: RunningStack, simulator: Simulator, prometheus: Prometheus) -> None:
    asyncio.run(drive(stack.ws_token, simulator, prometheus))


# ------------------------------------------------------------------ queries


def _values(prometheus: Prometheus, query: Query) -> list[float]:
    """Every non-NaN value the panel would draw over the test's time range."""
    now = time.time()
    if query.instant:
        response = prometheus.http.get("/api/v1/query", params={"query": query.expr})
    else:
        response = prometheus.http.get(
            "/api/v1/query_range",
            params={"query": query.expr, "start": now - LOOKBACK_S, "end": now, "step": STEP},
        )
    assert response.status_code == 200, f"{query.where}: {response.text}"
    values = []
    for series in response.json()["data"]["result"]:
        samples = series.get("values") or [series["value"]]
        values.extend(float(v) for _, v in samples if not math.isnan(float(v)))
    return values


def _has_data(prometheus: Prometheus, query: Query) -> bool:
    return bool(_values(prometheus, query))


def _assert_all_have_data(prometheus: Prometheus, queries: list[Query], timeout_s: float) -> None:
    """Polls: the last metrics of the traffic arrive within a few export intervals."""
    pending = list(queries)
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        pending = [q for q in pending if not _has_data(prometheus, q)]
        if pending:
            time.sleep(5)
    assert not pending, "No data:\n" + "\n".join(f"  {q.where}:\n    {q.expr}" for q in pending)


def test_panels_not_on_prometheus_are_the_expected_ones() -> None:
    assert panels_not_on_prometheus(dashboards()) == NOT_PROMETHEUS


def test_every_panel_query_returns_data(traffic: None, prometheus: Prometheus) -> None:
    queries, per_service = panel_queries(prometheus, "e2e")
    assert len(queries) > 80
    _assert_all_have_data(prometheus, queries + per_service, timeout_s=120)
    # The fault shows where it should, not only as a 0 line.
    for title in FAULT_PANELS:
        (query,) = [q for q in queries if f" / {title} / " in q.where]
        assert max(_values(prometheus, query)) > 0, query


def test_datasource_link_queries_return_data(traffic: None, prometheus: Prometheus) -> None:
    """Tempo's span → metrics links, with $__tags as Grafana fills it for a gateway span."""
    datasources = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    tempo = next(ds for ds in datasources if ds["uid"] == "tempo")
    links = tempo["jsonData"]["tracesToMetrics"]
    tags = ", ".join(f'{tag["value"]}="ws-gateway"' for tag in links["tags"])
    queries = [
        Query(
            f"tempo tracesToMetrics / {link['name']}",
            substitute(link["query"].replace("$$", "$"), {"$__tags": tags}),
        )
        for link in links["queries"]
    ]
    assert len(queries) == 3
    _assert_all_have_data(prometheus, queries, timeout_s=60)
