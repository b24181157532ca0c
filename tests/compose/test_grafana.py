"""Grafana in the compose stack, through Grafana's own HTTP API (basic auth as the admin
user): what an operator who opens http://127.0.0.1:3000 relies on.

- Provisioning loaded every datasource of grafana/provisioning/datasources/*.yaml (uid,
  type, URL, settings as Grafana stores them) and each one answers; every dashboard of
  grafana/dashboards/*.json is there, in the provider's folder, with the committed panels.
- After traffic through the gateway (the e2e suite's, tests/support/dashboards.py, and a
  rate-limited call), every Prometheus query of every panel, run by Grafana with Grafana
  filling in $__rate_interval, returns a real (non-NaN) value.
- The rate-limited call is found by its correlation ID in Tempo through Grafana (the
  overview's TraceQL panel query) with spans from all four services, and the Tempo
  datasource's trace-to-logs link leads to its log lines in Loki.

Only with EXAI_COMPOSE_IMAGES=upstream: Grafana, Tempo and Loki (AGPL) can be neither
pulled nor built where there is no registry, and the local-image stack runs without them
(tests/compose/no-agpl.yml).

How Grafana 12 runs each kind of query, and so how this test runs it:
- Prometheus and Loki queries: POST /api/ds/query (the backend plugins), as a panel does;
- a Tempo TraceQL *search*: Grafana's backend refuses it on /api/ds/query ("backend
  TraceQL search queries are not supported"); the browser sends it to Tempo's /api/search
  through the datasource proxy (or streams it over Grafana Live), so the test uses the
  proxy. Opening a trace by its ID is a backend query (queryType "traceId");
- health: GET /api/datasources/uid/<uid>/health where the backend plugin has a health
  check (Prometheus, Loki); for Tempo and Alertmanager, the request their "Save & test"
  sends through the proxy (Tempo's /api/echo, Alertmanager's /api/v2/status).
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.helpers import GatewaySession, Prometheus, Simulator, eventually
from tests.support.compose import MODE, ComposeStack
from tests.support.dashboards import (
    DATASOURCES_DIR,
    FAULT_PANELS,
    KIMI_MODEL,
    OUR_SERVICES,
    ROOT,
    Query,
    dashboards,
    drive,
    panel_queries,
    panels,
    substitute,
)

SKIP_REASON = (
    "Grafana, Tempo and Loki are AGPL: their images can be neither pulled (no registry) nor "
    "built here, so the local-image stack runs without them (tests/compose/no-agpl.yml); "
    "run with EXAI_COMPOSE_IMAGES=upstream on a machine that can pull them"
)
# Skipped before the stack is started for nothing; the fixture checks the stack too.
pytestmark = [pytest.mark.compose, pytest.mark.skipif(MODE == "local", reason=SKIP_REASON)]

DASHBOARD_PROVIDERS = ROOT / "grafana" / "provisioning" / "dashboards" / "dashboards.yaml"
# Panel queries: the last 15 minutes, the whole traffic. Traces and logs: the last hour.
PANEL_RANGE = "now-15m"
TRACE_RANGE = "now-1h"
# What Grafana offers to check each type of datasource: its backend health check, or the
# request the datasource's "Save & test" sends through the datasource proxy.
HEALTH = {
    "prometheus": "/api/datasources/uid/{uid}/health",
    "loki": "/api/datasources/uid/{uid}/health",
    "tempo": "/api/datasources/proxy/uid/{uid}/api/echo",
    "alertmanager": "/api/datasources/proxy/uid/{uid}/api/v2/status",
}


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def grafana(compose_stack: ComposeStack) -> Iterator[httpx.Client]:
    """Grafana's HTTP API as the admin user (basic auth)."""
    if not compose_stack.upstream:
        pytest.skip(SKIP_REASON)
    env = compose_stack.compose.env
    with httpx.Client(
        base_url=compose_stack.compose.url("grafana", 3000),
        auth=(env.get("GF_SECURITY_ADMIN_USER", "admin"), env["GF_SECURITY_ADMIN_PASSWORD"]),
        timeout=30,
    ) as client:
        # The healthcheck passed (up --wait); this proves the password works.
        eventually(lambda: client.get("/api/user").status_code == 200, timeout_s=60)
        yield client


@pytest.fixture(scope="module")
def traffic(compose_stack: ComposeStack, grafana: httpx.Client) -> str:
    """The e2e suite's dashboard traffic through the compose gateway, then one rate-limited
    call (an error: tail sampling keeps its trace; the proxy logs each retry). Returns that
    call's correlation ID."""
    stack = compose_stack
    sim = Simulator(
        stack.internal_token("llm-simulator", "simulator-admin"),
        stack.compose.url("llm-simulator", 8099),
    )
    prom = Prometheus(stack.compose.url("prometheus", 9090))
    try:
        asyncio.run(drive(stack.ws_token, sim, prom, stack.gateway_url))
        return asyncio.run(_rate_limited_call(stack, sim))
    finally:
        sim.http.close()
        prom.http.close()


async def _rate_limited_call(stack: ComposeStack, sim: Simulator) -> str:
    # Letters, digits and '-' only: nothing for Grafana's ${var:regex} format to escape.
    correlation_id = f"compose-grafana-{uuid.uuid4()}"
    sim.set_fault("rate_limit", 1.0, provider="kimi", retry_after_s=0)
    try:
        async with GatewaySession.open(stack.ws_token, stack.gateway_url) as session:
            result = await session.call(
                "chat",
                {
                    "prompt": "find me in Grafana",
                    "model": KIMI_MODEL,
                    # Memory too, so the storage adapter has spans in the trace.
                    "continuation_id": f"grafana-{uuid.uuid4().hex[:12]}",
                },
                correlation_id,
            )
    finally:
        sim.clear_faults()
    assert result.frame["op"] == "error", result.frame
    assert result.frame["error"]["code"] == "PROVIDER_ERROR", result.frame
    return correlation_id


# ------------------------------------------------------------------ Grafana's API


def _provisioned_datasources() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted(DATASOURCES_DIR.glob("*.yaml")):
        found.extend(yaml.safe_load(path.read_text()).get("datasources") or [])
    return found


def _uid_of(ds_type: str) -> str:
    (uid,) = [ds["uid"] for ds in _provisioned_datasources() if ds["type"] == ds_type]
    return str(uid)


def _unescaped(value: Any) -> Any:
    """A provisioning file's value as Grafana stores it: `$$` is a literal `$`."""
    if isinstance(value, str):
        return value.replace("$$", "$")
    if isinstance(value, list):
        return [_unescaped(v) for v in value]
    if isinstance(value, dict):
        return {k: _unescaped(v) for k, v in value.items()}
    return value


def _datasource(grafana: httpx.Client, uid: str) -> dict[str, Any]:
    response = grafana.get(f"/api/datasources/uid/{uid}")
    assert response.status_code == 200, (uid, response.status_code, response.text[:500])
    return dict(response.json())


def _health_problem(grafana: httpx.Client, ds: dict[str, Any]) -> str | None:
    """None when the datasource answers its check, else what Grafana said."""
    path = HEALTH[ds["type"]].format(uid=ds["uid"])
    response = grafana.get(path)
    if response.status_code != 200:
        return f"{path}: HTTP {response.status_code} {response.text[:300]}"
    if path.endswith("/health") and response.json().get("status") != "OK":
        return f"{path}: {response.text[:300]}"
    return None


def _settle(problems: Callable[[], list[str]], timeout_s: float, every_s: float = 3) -> None:
    """Polls until `problems()` is empty; fails with the last ones."""
    deadline = time.monotonic() + timeout_s
    while found := problems():
        assert time.monotonic() < deadline, "\n".join(found)
        time.sleep(every_s)


def _dashboard(grafana: httpx.Client, uid: str) -> dict[str, Any] | None:
    response = grafana.get(f"/api/dashboards/uid/{uid}")
    return dict(response.json()) if response.status_code == 200 else None


def _panel_target(board_uid: str, title: str) -> dict[str, Any]:
    (board,) = [b for b in dashboards() if b["uid"] == board_uid]
    (panel,) = [p for p in panels(board) if p["title"] == title and p.get("targets")]
    (target,) = panel["targets"]
    return dict(target)


def _ds_query(
    grafana: httpx.Client, queries: list[dict[str, Any]], since: str
) -> tuple[dict[str, dict[str, Any]], str | None]:
    """POST /api/ds/query: (each query's result by refId, None), or ({}, what went wrong
    for the whole request). A result has `frames`, or `error` when that query failed."""
    response = grafana.post("/api/ds/query", json={"queries": queries, "from": since, "to": "now"})
    try:
        body = response.json()
    except ValueError:
        body = None
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, dict):
        return {}, f"/api/ds/query: HTTP {response.status_code}: {response.text[:1000]}"
    return results, None


def _frame_values(result: dict[str, Any]) -> list[float]:
    """Every non-NaN number in a result's frames. Grafana's frame JSON writes NaN and ±Inf
    as null, listing their rows under `data.entities[field]` (NaN, Inf, NegInf); a null
    listed nowhere is a missing value."""
    values: list[float] = []
    for frame in result.get("frames") or []:
        data = frame.get("data") or {}
        columns = data.get("values") or []
        entities = data.get("entities") or []
        for i, field in enumerate(frame["schema"]["fields"]):
            if field.get("type") != "number" or i >= len(columns):
                continue
            special = (entities[i] if i < len(entities) else None) or {}
            infinite = {j: math.inf for j in special.get("Inf") or []}
            infinite.update({j: -math.inf for j in special.get("NegInf") or []})
            for j, value in enumerate(columns[i]):
                if value is not None:
                    values.append(float(value))
                elif j in infinite:
                    values.append(infinite[j])
    return values


def _rows(frame: dict[str, Any]) -> list[dict[str, Any]]:
    """A frame's rows as {field name: value}."""
    names = [f["name"] for f in frame["schema"]["fields"]]
    columns = (frame.get("data") or {}).get("values") or []
    if not columns:
        return []
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def _json(value: Any) -> Any:
    """A frame's JSON field (Grafana embeds it; decode it should it come as a string)."""
    return json.loads(value) if isinstance(value, str) else value


def _log_lines(result: dict[str, Any]) -> list[tuple[dict[str, str], str]]:
    """(labels, line) of each row of Loki's log frames: Grafana's classic shape (labels,
    Time, Line, tsNs, …) or the dataplane one (labels, timestamp, body, …). The labels
    include the structured metadata (trace_id, exai_correlation_id, …)."""
    lines = []
    for frame in result.get("frames") or []:
        for row in _rows(frame):
            line = row.get("Line", row.get("body"))
            if line is not None and "labels" in row:
                lines.append(({k: str(v) for k, v in (_json(row["labels"]) or {}).items()}, line))
    return lines


def _prometheus_target(query: Query) -> dict[str, Any]:
    return {
        "refId": "A",
        "datasource": {"uid": query.datasource, "type": "prometheus"},
        "expr": query.expr,
        "instant": query.instant,
        "range": not query.instant,
        "exemplar": False,
        # Grafana's default view: a step of at least the datasource's timeInterval (15 s),
        # hence $__rate_interval = 1m, as GRAFANA_MACROS has it for the e2e test.
        "intervalMs": 15_000,
        "maxDataPoints": 1_000,
    }


def _run(grafana: httpx.Client, query: Query) -> tuple[list[float], str | None]:
    """The panel query's non-NaN values through Grafana, and why there are none."""
    results, problem = _ds_query(grafana, [_prometheus_target(query)], PANEL_RANGE)
    if problem:
        return [], problem
    result = results.get("A") or {}
    if result.get("error"):
        return [], f"error: {result['error']}"
    return _frame_values(result), None


def _assert_all_have_data(grafana: httpx.Client, queries: list[Query], timeout_s: float) -> None:
    """Polls: the last metrics of the traffic arrive within a few export intervals."""
    pending = {query: "no data" for query in queries}
    deadline = time.monotonic() + timeout_s
    while True:
        for query in list(pending):
            values, problem = _run(grafana, query)
            if values:
                del pending[query]
            else:
                pending[query] = problem or "no data"
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(5)
    assert not pending, "No data through Grafana:\n" + "\n".join(
        f"  {q.where}: {why}\n    {q.expr}" for q, why in pending.items()
    )


def _tempo_search(grafana: httpx.Client, uid: str, traceql: str, limit: int) -> list[str]:
    """Trace IDs (32 hex digits) a TraceQL search finds, run as Grafana's Tempo datasource
    runs it without streaming: Tempo's /api/search through the datasource proxy."""
    now = int(time.time())
    response = grafana.get(
        f"/api/datasources/proxy/uid/{uid}/api/search",
        params={"q": traceql, "limit": limit, "start": now - 3600, "end": now},
    )
    assert response.status_code == 200, (response.status_code, response.text[:1000])
    # Tempo trims leading zeros from the IDs it returns.
    return [t["traceID"].lower().zfill(32) for t in response.json().get("traces") or []]


def _tempo_trace(grafana: httpx.Client, uid: str, trace_id: str) -> list[dict[str, Any]]:
    """The trace's spans as Grafana's trace view gets them (queryType traceId), one row a
    span: traceID, spanID, operationName, serviceName, tags, … Empty while Tempo does not
    have it."""
    results, problem = _ds_query(
        grafana,
        [
            {
                "refId": "A",
                "datasource": {"uid": uid, "type": "tempo"},
                "queryType": "traceId",
                "query": trace_id,
            }
        ],
        TRACE_RANGE,
    )
    result = results.get("A") or {}
    if problem or result.get("error"):
        return []
    return [row for frame in result.get("frames") or [] for row in _rows(frame)]


def _loki_lines(
    grafana: httpx.Client, uid: str, logql: str
) -> list[tuple[dict[str, str], str]] | None:
    results, problem = _ds_query(
        grafana,
        [
            {
                "refId": "A",
                "datasource": {"uid": uid, "type": "loki"},
                "expr": logql,
                "queryType": "range",
                "maxLines": 1000,
            }
        ],
        TRACE_RANGE,
    )
    assert not problem, problem
    result = results.get("A") or {}
    assert not result.get("error"), (logql, result["error"])
    return _log_lines(result) or None


# ------------------------------------------------------------------ provisioning


def test_provisioning_loaded_every_datasource_and_each_answers(grafana: httpx.Client) -> None:
    provisioned = _provisioned_datasources()
    assert {"prometheus", "tempo", "loki"} <= {ds["type"] for ds in provisioned}
    # A new type of datasource needs a conscious choice of how to check it.
    assert {ds["type"] for ds in provisioned} <= HEALTH.keys()
    for ds in provisioned:
        loaded = _datasource(grafana, ds["uid"])
        assert (loaded["uid"], loaded["type"], loaded["name"]) == (
            ds["uid"],
            ds["type"],
            ds["name"],
        )
        assert loaded["url"] == ds["url"], ds["uid"]
        assert loaded["isDefault"] is bool(ds.get("isDefault", False)), ds["uid"]
        # Provisioned with editable: false, so read-only in the UI.
        assert loaded["readOnly"] is not bool(ds.get("editable", False)), ds["uid"]
        for key, expected in _unescaped(ds.get("jsonData") or {}).items():
            assert loaded["jsonData"].get(key) == expected, (ds["uid"], key, loaded["jsonData"])
    _settle(
        lambda: [p for ds in provisioned if (p := _health_problem(grafana, ds)) is not None],
        timeout_s=90,
    )


def test_provisioning_loaded_every_dashboard_with_the_committed_panels(
    grafana: httpx.Client,
) -> None:
    (provider,) = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"]
    committed = dashboards()
    assert len(committed) >= 5
    for board in committed:
        doc = eventually(functools.partial(_dashboard, grafana, board["uid"]), timeout_s=60)
        dashboard, meta = doc["dashboard"], doc["meta"]
        assert dashboard["title"] == board["title"]
        assert meta["provisioned"] is True, meta
        assert meta["folderTitle"] == provider["folder"], meta
        outline = [(p["type"], p["title"], len(p.get("targets", []))) for p in panels(board)]
        loaded = [(p["type"], p["title"], len(p.get("targets", []))) for p in panels(dashboard)]
        assert loaded == outline, board["uid"]
        variables = [v["name"] for v in board.get("templating", {}).get("list", [])]
        loaded_variables = [v["name"] for v in dashboard.get("templating", {}).get("list", [])]
        assert loaded_variables == variables, board["uid"]


# ------------------------------------------------------------------ panels


def test_every_panel_query_has_data_through_grafana(
    traffic: str, grafana: httpx.Client, compose_stack: ComposeStack
) -> None:
    """The e2e test's check (tests/e2e/test_dashboards.py), with Grafana running each query:
    its Prometheus datasource, its macros, its frames. Template variables are filled in
    here, as the browser does (their values from Prometheus, as Grafana lists them)."""
    prom = Prometheus(compose_stack.compose.url("prometheus", 9090))
    try:
        queries, per_service = panel_queries(
            prom, compose_stack.compose.env["EXAI_ENVIRONMENT"], grafana_macros=False
        )
    finally:
        prom.http.close()
    assert len(queries) > 80
    # Tempo's span → metrics links, as Grafana stored them (the file's $$__tags is
    # $__tags) and fills $__tags in for a gateway span.
    links = _datasource(grafana, _uid_of("tempo"))["jsonData"]["tracesToMetrics"]
    tags = ", ".join(f'{tag["value"]}="ws-gateway"' for tag in links["tags"])
    link_queries = []
    for link in links["queries"]:
        assert "$__tags" in link["query"], link
        link_queries.append(
            Query(
                f"tempo tracesToMetrics / {link['name']}",
                substitute(link["query"], {"$__tags": tags}, grafana_macros=False),
                datasource=links["datasourceUid"],
            )
        )
    assert len(link_queries) == 3
    _assert_all_have_data(grafana, queries + per_service + link_queries, timeout_s=120)
    # The fault shows where it should, not only as a 0 line.
    for title in FAULT_PANELS:
        (query,) = [q for q in queries if f" / {title} / " in q.where]
        values, problem = _run(grafana, query)
        assert values and max(values) > 0, (query, values, problem)


# ------------------------------------------------------------------ traces and logs


def test_a_call_is_found_by_correlation_id_in_tempo_and_its_logs_in_loki(
    traffic: str, grafana: httpx.Client
) -> None:
    correlation_id = traffic
    tempo_uid, loki_uid = _uid_of("tempo"), _uid_of("loki")
    # The overview's "Traces for correlation_id" panel, with the ID typed in the box.
    panel = _panel_target("exai-overview", "Traces for correlation_id")
    assert (panel["queryType"], panel["datasource"]["uid"]) == ("traceql", tempo_uid)
    traceql = panel["query"].replace("$correlation_id", correlation_id)
    assert traceql == f'{{ span.exai.correlation_id = "{correlation_id}" }}'

    seen: list[Any] = []

    def found() -> tuple[str, list[dict[str, Any]]] | None:
        trace_ids = _tempo_search(grafana, tempo_uid, traceql, int(panel.get("limit", 20)))
        spans = _tempo_trace(grafana, tempo_uid, trace_ids[0]) if len(trace_ids) == 1 else []
        seen[:] = [trace_ids, sorted({s["serviceName"] for s in spans})]
        if spans and set(OUR_SERVICES) <= {s["serviceName"] for s in spans}:
            return trace_ids[0], spans
        return None

    try:
        trace_id, spans = eventually(found, timeout_s=90, every_s=3)
    except AssertionError as exc:
        raise AssertionError(f"not found in Tempo (trace IDs, services): {seen}") from exc
    assert {s["traceID"].lower().zfill(32) for s in spans} == {trace_id}
    for span in spans:
        attributes = {tag["key"]: tag["value"] for tag in _json(span["tags"]) or []}
        assert attributes.get("exai.correlation_id") == correlation_id, span["operationName"]
    attempts = sorted(s["operationName"] for s in spans if s["operationName"].startswith("attempt"))
    assert attempts == ["attempt 1", "attempt 2", "attempt 3"]

    # From a span to its logs: Tempo's provisioned trace-to-logs link points at Loki ...
    json_data = _datasource(grafana, tempo_uid)["jsonData"]
    link = json_data.get("tracesToLogsV2") or json_data["tracesToLogs"]
    assert link["datasourceUid"] == loki_uid, link
    assert _datasource(grafana, loki_uid)["type"] == "loki"
    # ... and its query, as Grafana fills it in for a provider-proxy span (the file's $$
    # escapes are single $ once provisioned), returns the call's log lines.
    assert link.get("customQuery") and link.get("filterByTraceID"), link
    assert "${__tags}" in link["query"] and "${__trace.traceId}" in link["query"], link
    tags = ", ".join(f'{tag["value"]}="provider-proxy"' for tag in link["tags"])
    logql = link["query"].replace("${__tags}", tags).replace("${__trace.traceId}", trace_id)
    lines = eventually(lambda: _loki_lines(grafana, loki_uid, logql), timeout_s=90, every_s=3)
    for labels, line in lines:
        assert labels.get("service_name", "provider-proxy") == "provider-proxy", (labels, line)
        assert labels.get("trace_id", trace_id).lower() == trace_id, (labels, line)

    # The overview's "Live event log" panel, with the ID typed in, shows the call's lines.
    panel = _panel_target("exai-overview", "Live event log")
    assert panel["datasource"]["uid"] == loki_uid
    assert re.fullmatch(r"[A-Za-z0-9-]+", correlation_id)
    logql = panel["expr"].replace("${correlation_id:regex}", correlation_id)
    lines = eventually(lambda: _loki_lines(grafana, loki_uid, logql), timeout_s=90, every_s=3)
    for labels, line in lines:
        assert labels.get("exai_correlation_id", correlation_id) == correlation_id, (labels, line)
        assert labels.get("trace_id", trace_id).lower() == trace_id, (labels, line)
