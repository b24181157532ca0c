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
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.e2e.helpers import GatewaySession, Prometheus, Simulator
from tests.support.stack import ROOT, RunningStack

pytestmark = pytest.mark.e2e

DASHBOARDS_DIR = ROOT / "grafana" / "dashboards"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
KIMI_MODEL = "kimi-k2-0905-preview"
GLM_MODEL = "glm-4.5"

# What Grafana substitutes, for its default view (last hour, Prometheus scraped every
# 15 s: the datasource's timeInterval): $__interval is the step, $__rate_interval
# max(4 * scrape interval, step + scrape interval).
GRAFANA_MACROS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
# How far back a range query looks: the whole test's traffic.
LOOKBACK_S = 15 * 60
# An alert the injected fault causes (ProviderErrorRatioHigh or ProviderCircuitOpen).
GLM_FIRING = 'ALERTS{alertstate="firing", gen_ai_provider_name="glm"}'
STEP = "15s"

# Panels whose datasource is not Prometheus: (dashboard uid, title) -> panel type.
NOT_PROMETHEUS = {
    ("exai-overview", "Live event log"): "logs",  # Loki (compose)
    ("exai-overview", "Traces for correlation_id"): "table",  # Tempo TraceQL
    ("exai-slo", "Alert rules firing or pending"): "alertlist",
}


@dataclass(frozen=True)
class Query:
    where: str  # "dashboard uid / panel title / refId" or the datasource link
    expr: str
    instant: bool = False


def _dashboards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(DASHBOARDS_DIR.glob("*.json"))]


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def substitute(expr: str, variables: dict[str, str]) -> str:
    for name, value in {**GRAFANA_MACROS, **variables}.items():
        expr = expr.replace(name, value)
    leftover = re.findall(r"\$\{?\w+", expr)
    assert not leftover, f"unsubstituted variables {leftover} in {expr}"
    return expr


# ------------------------------------------------------------------ traffic


async def _call(
    session: GatewaySession, tool: str, arguments: dict[str, Any], *, stream: bool = False
) -> dict[str, Any]:
    """One call_tool; returns its final frame (streamed calls also get their chunks)."""
    request_id = uuid.uuid4().hex
    frame: dict[str, Any] = {
        "op": "call_tool",
        "request_id": request_id,
        "name": tool,
        "arguments": arguments,
        "correlation_id": f"e2e-dash-{uuid.uuid4()}",
    }
    if stream:
        frame["stream"] = True
    await session.ws.send(json.dumps(frame))
    chunks = 0
    while True:
        reply = json.loads(await session.ws.recv())
        if reply.get("request_id") != request_id:
            continue
        if reply["op"] == "stream_chunk":
            chunks += 1
        if reply["op"] in ("call_tool_res", "error"):
            reply["_chunks"] = chunks
            return reply


async def _healthy_round(session: GatewaySession) -> None:
    """Every kind of call the dashboards describe, on both providers."""
    conversation = f"dash-{uuid.uuid4().hex[:12]}"
    for model in (KIMI_MODEL, GLM_MODEL):
        ok = await _call(session, "chat", {"prompt": "dashboards, plain", "model": model})
        assert ok["op"] == "call_tool_res", ok
        streamed = await _call(
            session, "chat", {"prompt": "dashboards, streamed", "model": model}, stream=True
        )
        assert streamed["op"] == "call_tool_res" and streamed["_chunks"] > 0, streamed
    # Memory: the first call writes the conversation, the second reads it back.
    for turn in ("remember this", "what did I say?"):
        reply = await _call(
            session,
            "chat",
            {"prompt": turn, "model": KIMI_MODEL, "continuation_id": conversation},
        )
        assert reply["op"] == "call_tool_res", reply
    consensus = await _call(
        session, "consensus", {"prompt": "dashboards, both", "models": [KIMI_MODEL, GLM_MODEL]}
    )
    assert consensus["op"] == "call_tool_res", consensus
    await _call(session, "listmodels", {})


async def _drive(token: str, simulator: Simulator, prometheus: Prometheus) -> None:
    async with GatewaySession.open(token) as session:
        for _ in range(3):
            await _healthy_round(session)
        # Intermittent Kimi 500s: calls are retried and mostly succeed, the breaker stays
        # closed. For 20 s, so that the retry counter rises after its series exists
        # (rate() cannot see the increase that creates a series).
        simulator.set_fault("error_500", 0.3, provider="kimi")
        try:
            until = time.monotonic() + 20
            while time.monotonic() < until:
                await _call(session, "chat", {"prompt": "flaky", "model": KIMI_MODEL})
                await asyncio.sleep(0.2)
        finally:
            simulator.clear_faults()
        # A provider fault: GLM answers 500 to everything; the proxy retries, the circuit
        # opens, calls fail. Keep the traffic up until an alert fires.
        simulator.set_fault("error_500", 1.0, provider="glm")
        try:
            deadline = time.monotonic() + 360
            while not prometheus.query(GLM_FIRING):
                assert time.monotonic() < deadline, "no alert fired under a GLM fault"
                failed = await _call(session, "chat", {"prompt": "fault", "model": GLM_MODEL})
                assert failed["op"] == "error", failed
                await _call(session, "chat", {"prompt": "still fine", "model": KIMI_MODEL})
                await asyncio.sleep(0.5)
        finally:
            simulator.clear_faults()
        # The breaker closes after its cooldown and a successful half-open probe.
        deadline = time.monotonic() + 60
        while (await _call(session, "chat", {"prompt": "back?", "model": GLM_MODEL}))[
            "op"
        ] != "call_tool_res":
            assert time.monotonic() < deadline, "GLM circuit did not close after the fault"
            await asyncio.sleep(1)
        # Healthy again, so the last minute's windows hold every kind of call.
        for _ in range(2):
            await _healthy_round(session)


@pytest.fixture(scope="module")
def traffic(stack: RunningStack, simulator: Simulator, prometheus: Prometheus) -> None:
    asyncio.run(_drive(stack.ws_token, simulator, prometheus))


# ------------------------------------------------------------------ queries


def _label_values(prometheus: Prometheus, query: str) -> list[str]:
    """Grafana's `label_values(metric{…}, label)` variable query, through the series API."""
    match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
    assert match, query
    selector, label = match.groups()
    now = time.time()
    response = prometheus.http.get(
        "/api/v1/series",
        params={"match[]": selector, "start": now - LOOKBACK_S, "end": now},
    )
    response.raise_for_status()
    return sorted({s[label] for s in response.json()["data"] if label in s})


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


def _variables(prometheus: Prometheus, board: dict[str, Any]) -> list[dict[str, str]]:
    """Each combination the test runs the board with: All, then every single service."""
    templating = {v["name"]: v for v in board.get("templating", {}).get("list", [])}
    if "service" not in templating:
        values = {"correlation_id": ""} if "correlation_id" in templating else {}
        return [{f"${name}": value for name, value in values.items()}]
    services = _label_values(prometheus, templating["service"]["query"]["query"])
    assert {"ws-gateway", "provider-proxy", "storage-adapter", "llm-simulator"} <= set(services)
    env_query = templating["env"]["query"]["query"]
    combos = [{"$service": ".*", "$env": ".*"}]  # the default: All
    for service in services:
        envs = _label_values(prometheus, substitute(env_query, {"$service": service}))
        assert envs == ["e2e"], (service, envs)
        combos.append({"$service": service, "$env": envs[0]})
    return combos


def test_panels_not_on_prometheus_are_the_expected_ones() -> None:
    found = {}
    for board in _dashboards():
        for panel in _panels(board):
            if panel["type"] in ("row", "text"):
                continue
            datasources = {t["datasource"]["type"] for t in panel.get("targets", [])}
            if datasources != {"prometheus"}:
                found[(board["uid"], panel["title"])] = panel["type"]
    assert found == NOT_PROMETHEUS


def test_every_panel_query_returns_data(traffic: None, prometheus: Prometheus) -> None:
    queries: list[Query] = []
    per_service: list[Query] = []
    for board in _dashboards():
        combos = _variables(prometheus, board)
        for panel in _panels(board):
            for target in panel.get("targets", []):
                if target["datasource"]["type"] != "prometheus":
                    continue
                for variables in combos:
                    query = Query(
                        f"{board['uid']} / {panel['title']} / {target['refId']} {variables}",
                        substitute(target["expr"], variables),
                        instant=bool(target.get("instant")),
                    )
                    if variables.get("$service", ".*") == ".*":
                        queries.append(query)
                    elif (
                        "SPAN_KIND_SERVER" in target["expr"]
                        and "http_route" not in target["expr"]
                        and panel["type"] != "heatmap"
                    ):
                        # Every service handles requests (the gateway's have no HTTP
                        # route): its RED-by-span panels have data.
                        per_service.append(query)
    assert len(queries) > 80
    _assert_all_have_data(prometheus, queries + per_service, timeout_s=120)
    # The fault shows where it should, not only as a 0 line.
    for title in ("GLM: errors/s", "Retries per second by reason", "Alerts firing"):
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
