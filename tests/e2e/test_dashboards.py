"""End-to-end: every Grafana panel query returns data.

Traffic goes through the gateway like a user's: plain, streamed, memory (continuation)
and consensus calls on both providers, intermittent provider errors (retried), then a
provider outage (simulator admin API) long enough for an alert to fire. Then every
Prometheus query of every committed dashboard (grafana/dashboards/*.json, equal to the
generator's output by the unit tests), every template variable's query and every
datasource link's query runs against the real Prometheus with Grafana's variables
substituted, and must return at least one real (non-NaN) value: a panel that would show
"No data" fails here.

A query can have data and still read the wrong series: `errors or all * 0` draws a 0 line
when `errors` is misspelled. So every vector selector of every query, as Prometheus' own
parser finds them (/api/v1/parse_query), must match series after the traffic. The traffic
includes calls that fall back to another provider (provider-proxy restarted with a
fallback map), so the fallback panels carry data too.

Panels on other datasources (Loki, Tempo, the alert list) have no Prometheus query; the
test pins that list, so a new one is a conscious choice. The alert list's filters must
match the alerts the fault fired; the log panel's stream selector and filters must match
the log records of the traffic's calls (the no-Docker stack writes them to a file in the
OTLP form Loki ingests).

The dashboards, their queries and the traffic are tests/support/dashboards.py, which the
compose test (tests/compose/test_grafana.py) runs through Grafana itself.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.e2e.helpers import Prometheus, Simulator, eventually
from tests.support.dashboards import (
    DATASOURCES,
    FALLBACK_MAP,
    FALLBACK_PANELS,
    FAULT_PANELS,
    LOOKBACK_S,
    NOT_PROMETHEUS,
    Query,
    alert_list_panels,
    dashboards,
    drive,
    drive_fallbacks,
    excused,
    log_panel_queries,
    panel_queries,
    panels_not_on_prometheus,
    selectors,
    selectors_without_series,
    substitute,
)
from tests.support.stack import RunningStack

pytestmark = pytest.mark.e2e

STEP = "15s"


PROXY = "provider-proxy"


@pytest.fixture(scope="module")
def traffic(
    stack: RunningStack, simulator: Simulator, prometheus: Prometheus
) -> Iterator[dict[str, int]]:
    """The dashboards' traffic, then fallbacks: provider-proxy restarted with a fallback
    map for this module only (other tests expect GLM's failures to reach the client), and
    restarted with its own environment again at the end."""
    asyncio.run(drive(stack.ws_token, simulator, prometheus))
    shipped = dict(stack.processes[PROXY].env)
    stack.kill(PROXY, signal.SIGTERM)
    stack.restart(PROXY, env={**shipped, "EXAI_FALLBACK_MAP": FALLBACK_MAP})
    try:
        # The fallback counters start at 0; rate() needs that 0 in Prometheus before the
        # first fallback (the first export comes a few seconds after the start).
        eventually(lambda: prometheus.query("exai_provider_fallbacks_total"), timeout_s=60)
        outcomes = asyncio.run(drive_fallbacks(stack.ws_token, simulator))
        assert outcomes["ok"] and outcomes["error"], outcomes
        yield outcomes
    finally:
        stack.kill(PROXY, signal.SIGTERM)
        stack.restart(PROXY, env=shipped)


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


def test_every_panel_query_returns_data(traffic: dict[str, int], prometheus: Prometheus) -> None:
    queries, per_service = panel_queries(prometheus, "e2e")
    assert len(queries) > 80
    _assert_all_have_data(prometheus, queries + per_service, timeout_s=120)
    # The fault shows where it should, not only as a 0 line; so do the fallbacks.
    for title in FAULT_PANELS + FALLBACK_PANELS:
        (query,) = [q for q in queries if f" / {title} / " in q.where]
        assert max(_values(prometheus, query)) > 0, query


def test_parser_finds_every_selector_of_a_fallback_query(prometheus: Prometheus) -> None:
    """The proof below rests on this: the `or … * 0` branch's selector is found too."""
    found = selectors(
        prometheus,
        'sum(rate(exai_provider_fallbacks_total{exai_outcome="error"}[$__rate_interval]))\n'
        "or on ()\nsum(rate(exai_provider_requests_totl[5m])) * 0",
    )
    assert found == [
        '{exai_outcome="error", __name__="exai_provider_fallbacks_total"}',
        '{__name__="exai_provider_requests_totl"}',
    ]
    typo = Query("typo", "sum(rate(exai_provider_requests_totl[5m])) or vector(0)")
    assert '{__name__="exai_provider_requests_totl"}' in selectors_without_series(
        prometheus, [typo]
    )


def test_every_selector_of_every_panel_query_matches_series(
    traffic: dict[str, int], prometheus: Prometheus
) -> None:
    """No query has data only through its fallback branch: each selector (a misspelled
    metric or label value among them) matches series from the traffic."""
    queries, per_service = panel_queries(prometheus, "e2e")
    deadline = time.monotonic() + 120
    while missing := {
        selector: where
        for selector, where in selectors_without_series(prometheus, queries + per_service).items()
        if not excused(prometheus, selector)
    }:
        if time.monotonic() > deadline:
            break
        time.sleep(5)
    assert not missing, "selectors without series:\n" + "\n".join(
        f"  {selector}   ({where})" for selector, where in sorted(missing.items())
    )


# ------------------------------------------------------------------ alert list and logs


def test_alert_list_panels_show_the_alerts_the_fault_fired(
    traffic: dict[str, int], prometheus: Prometheus
) -> None:
    """Grafana's alert list shows Prometheus' rules by state, filtered by alert name and
    instance labels: those filters must match the alerts the traffic's fault fired."""
    (panel,) = alert_list_panels(dashboards())
    options = panel["options"]
    assert options["stateFilter"]["firing"] is True
    matchers = ['alertstate="firing"']
    if options.get("alertName"):
        matchers.append(f"alertname=~{json.dumps('.*' + options['alertName'] + '.*')}")
    if options.get("alertInstanceLabelFilter"):
        matchers.append(options["alertInstanceLabelFilter"].strip("{}"))
    query = "ALERTS{" + ", ".join(matchers) + "}"
    now = time.time()
    response = prometheus.http.get(
        "/api/v1/query_range",
        params={"query": query, "start": now - LOOKBACK_S, "end": now, "step": "15s"},
    )
    assert response.status_code == 200, response.text
    fired = {r["metric"]["alertname"] for r in response.json()["data"]["result"]}
    assert fired - {"Watchdog"}, (query, fired)


def _log_records(stack: RunningStack) -> list[dict[str, str]]:
    """The stack's log records as Loki would index them (OTLP ingestion: resource and
    record attributes with dots as underscores; the body as the line)."""
    path = stack.var / "telemetry" / "logs.jsonl"
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            payload = json.loads(line)
        except json.JSONDecodeError:
            continue  # the writer may be half-way through the last line
        for resource_logs in payload.get("resourceLogs", []):
            resource = _attributes(resource_logs.get("resource", {}))
            for scope in resource_logs.get("scopeLogs", []):
                for record in scope.get("logRecords", []):
                    records.append({**resource, **_attributes(record)})
    return records


def _attributes(item: dict[str, Any]) -> dict[str, str]:
    return {
        a["key"].replace(".", "_"): str(next(iter(a["value"].values()), ""))
        for a in item.get("attributes", [])
        if a.get("value")
    }


def test_log_panel_selects_the_traffics_log_lines(
    traffic: dict[str, int], stack: RunningStack
) -> None:
    """The event log's LogQL: its stream selector and label filters, with the dashboard's
    variables at their defaults and at one correlation ID, match the traffic's records."""
    records = _log_records(stack)
    correlated = [r for r in records if r.get("exai_correlation_id", "").startswith("e2e-dash-")]
    assert correlated, "no log record of the dashboard traffic"
    one = correlated[-1]["exai_correlation_id"]
    ((where, logql),) = log_panel_queries(dashboards())
    for correlation_id, least in (("", 2), (one, 1)):
        expr = logql.replace("${correlation_id:regex}", re.escape(correlation_id))
        expr = expr.replace("$env", "e2e")
        matchers = re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', expr)
        assert matchers and all(op == "=~" or op == "=" for _, op, _ in matchers), expr
        selected = [
            r
            for r in records
            if all(
                re.fullmatch(value.replace("\\\\", "\\"), r.get(label, ""))
                for label, _, value in matchers
            )
        ]
        services = {r["service_name"] for r in selected}
        assert len(services) >= least, (where, expr, services)
        if correlation_id:
            assert {r["exai_correlation_id"] for r in selected} == {correlation_id}


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


# ------------------------------------------------------------------ heatmap


def test_latency_heatmap_counts_each_call_once(
    traffic: dict[str, int], prometheus: Prometheus
) -> None:
    """The heatmap's cells, added up over the time range (its +Inf row: every call),
    give the number of calls the service handled, not a multiple of it."""
    (board,) = [b for b in dashboards() if b["uid"] == "exai-service"]
    (panel,) = [p for p in _panels_of(board) if p["type"] == "heatmap"]
    expr = substitute(panel["targets"][0]["expr"], {"$service": "ws-gateway", "$env": ".*"})
    span_s, step_s = 600, 15
    now = time.time()
    response = prometheus.http.get(
        "/api/v1/query_range",
        params={"query": expr, "start": now - span_s, "end": now, "step": f"{step_s}s"},
    )
    assert response.status_code == 200, response.text
    (inf,) = [r for r in response.json()["data"]["result"] if r["metric"]["le"] == "+Inf"]
    drawn = sum(float(v) for _, v in inf["values"]) * step_s
    # The cells at `start` look back one rate window ($__rate_interval = 1m) further.
    calls = prometheus.scalar(
        "sum(increase(traces_spanmetrics_latency_count"
        f'{{service_name="ws-gateway", span_kind="SPAN_KIND_SERVER"}}[{span_s + 60}s]))'
    )
    assert calls and calls > 20
    assert 0.7 < drawn / calls < 1.4, (drawn, calls)


def _panels_of(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])
