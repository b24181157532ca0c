"""The committed Grafana dashboards as the tests read them, and the traffic that gives every
panel data. Shared by tests/e2e/test_dashboards.py (each query straight to Prometheus, the
no-Docker stack) and tests/compose/test_grafana.py (the same queries through Grafana's own
API, the compose stack with the upstream images).

- `dashboards()`, `panels()`: grafana/dashboards/*.json (equal to the generator's output by
  the unit tests), rows' nested panels included;
- `panel_queries()`: every Prometheus target of every panel with the dashboard's template
  variables filled in (All, then the environment, then each service where a panel is per
  service);
- `selectors()`: every series selector of a PromQL query, from Prometheus' own parser
  (/api/v1/parse_query): a panel whose query has data only through an `or … * 0` or
  `or vector(0)` fallback is caught by proving each selector matches series;
- `drive()`: plain, streamed, memory and consensus calls on both providers, intermittent
  provider errors (retried), then a provider outage until an alert fires;
  `drive_fallbacks()`: calls that fall back to another provider, and fallbacks that fail
  too (the proxy must run with a fallback map).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.helpers import GATEWAY, GatewaySession, Prometheus, Simulator

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = ROOT / "grafana" / "dashboards"
DATASOURCES_DIR = ROOT / "grafana" / "provisioning" / "datasources"
DATASOURCES = DATASOURCES_DIR / "datasources.yaml"
KIMI_MODEL = "kimi-k2-0905-preview"
GLM_MODEL = "glm-4.5"
OUR_SERVICES = ("ws-gateway", "provider-proxy", "storage-adapter", "llm-simulator")

# What Grafana substitutes, for its default view (last hour, Prometheus scraped every
# 15 s: the datasource's timeInterval): $__interval is the step, $__rate_interval
# max(4 * scrape interval, step + scrape interval).
GRAFANA_MACROS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
# How far back a range query looks: the whole test's traffic.
LOOKBACK_S = 15 * 60
# An alert the injected fault causes (ProviderErrorRatioHigh or ProviderCircuitOpen).
GLM_FIRING = 'ALERTS{alertstate="firing", gen_ai_provider_name="glm"}'

# Panels whose datasource is not Prometheus: (dashboard uid, title) -> panel type.
NOT_PROMETHEUS = {
    ("exai-overview", "Live event log"): "logs",  # Loki (compose)
    ("exai-overview", "Traces for correlation_id"): "table",  # Tempo TraceQL
    ("exai-slo", "Alert rules firing or pending"): "alertlist",
}
# Whose value must be above 0 after the traffic, not only a 0 line: the fault shows.
FAULT_PANELS = ("GLM: errors/s", "Retries per second by reason", "Alerts firing")
# The same, after drive_fallbacks() (a proxy with a fallback map).
FALLBACK_PANELS = ("Fallbacks per second (from → to)", "Failed fallbacks per second")
# provider-proxy's fallback map for drive_fallbacks(): GLM's calls go to Kimi.
FALLBACK_MAP = '{"glm": "kimi"}'


@dataclass(frozen=True)
class Query:
    where: str  # "dashboard uid / panel title / refId" or the datasource link
    expr: str
    instant: bool = False
    datasource: str = "prometheus"  # the target's datasource uid


def dashboards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(DASHBOARDS_DIR.glob("*.json"))]


def panels(board: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def panels_not_on_prometheus(boards: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(dashboard uid, panel title) -> panel type, for every panel with a query whose
    targets are not all on Prometheus."""
    found = {}
    for board in boards:
        for panel in panels(board):
            if panel["type"] in ("row", "text"):
                continue
            datasources = {t["datasource"]["type"] for t in panel.get("targets", [])}
            if datasources != {"prometheus"}:
                found[(board["uid"], panel["title"])] = panel["type"]
    return found


def substitute(expr: str, variables: Mapping[str, str], *, grafana_macros: bool = True) -> str:
    """`expr` with the dashboard's variables filled in. With grafana_macros, Grafana's own
    macros ($__rate_interval, …) too; without, they are left for Grafana's backend."""
    macros = GRAFANA_MACROS if grafana_macros else {}
    for name, value in {**macros, **variables}.items():
        expr = expr.replace(name, value)
    unfilled = r"\$\{?\w+" if grafana_macros else r"\$\{?(?!__)\w+"
    leftover = re.findall(unfilled, expr)
    assert not leftover, f"unsubstituted variables {leftover} in {expr}"
    return expr


# ------------------------------------------------------------------ traffic


async def call(
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


async def healthy_round(session: GatewaySession) -> None:
    """Every kind of call the dashboards describe, on both providers."""
    conversation = f"dash-{uuid.uuid4().hex[:12]}"
    for model in (KIMI_MODEL, GLM_MODEL):
        ok = await call(session, "chat", {"prompt": "dashboards, plain", "model": model})
        assert ok["op"] == "call_tool_res", ok
        streamed = await call(
            session, "chat", {"prompt": "dashboards, streamed", "model": model}, stream=True
        )
        assert streamed["op"] == "call_tool_res" and streamed["_chunks"] > 0, streamed
    # Memory: the first call writes the conversation, the second reads it back (a cache
    # miss that refills the cache), the third reads it from the cache (a hit).
    for turn in ("remember this", "what did I say?", "and before that?"):
        reply = await call(
            session,
            "chat",
            {"prompt": turn, "model": KIMI_MODEL, "continuation_id": conversation},
        )
        assert reply["op"] == "call_tool_res", reply
    consensus = await call(
        session, "consensus", {"prompt": "dashboards, both", "models": [KIMI_MODEL, GLM_MODEL]}
    )
    assert consensus["op"] == "call_tool_res", consensus
    await call(session, "listmodels", {})


async def drive(
    token: str, simulator: Simulator, prometheus: Prometheus, gateway_url: str = GATEWAY
) -> None:
    """Traffic after which every panel has data (see the module docstring)."""
    async with GatewaySession.open(token, gateway_url) as session:
        for _ in range(3):
            await healthy_round(session)
        # Intermittent Kimi 500s: calls are retried and mostly succeed, the breaker stays
        # closed. For 20 s, so that the retry counter rises after its series exists
        # (rate() cannot see the increase that creates a series).
        simulator.set_fault("error_500", 0.3, provider="kimi")
        try:
            until = time.monotonic() + 20
            while time.monotonic() < until:
                await call(session, "chat", {"prompt": "flaky", "model": KIMI_MODEL})
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
                failed = await call(session, "chat", {"prompt": "fault", "model": GLM_MODEL})
                assert failed["op"] == "error", failed
                await call(session, "chat", {"prompt": "still fine", "model": KIMI_MODEL})
                await asyncio.sleep(0.5)
        finally:
            simulator.clear_faults()
        # The breaker closes after its cooldown and a successful half-open probe.
        deadline = time.monotonic() + 60
        while (await call(session, "chat", {"prompt": "back?", "model": GLM_MODEL}))[
            "op"
        ] != "call_tool_res":
            assert time.monotonic() < deadline, "GLM circuit did not close after the fault"
            await asyncio.sleep(1)
        # Healthy again, so the last minute's windows hold every kind of call.
        for _ in range(2):
            await healthy_round(session)


# ------------------------------------------------------------------ queries


def label_values(prometheus: Prometheus, query: str) -> list[str]:
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


def variable_combos(
    prometheus: Prometheus, board: Mapping[str, Any], environment: str
) -> list[dict[str, str]]:
    """Each combination a board is run with: All, then every single service (whose only
    environment must be `environment`)."""
    templating = {v["name"]: v for v in board.get("templating", {}).get("list", [])}
    if "service" not in templating:
        values = {"correlation_id": ""} if "correlation_id" in templating else {}
        combos = [{f"${name}": value for name, value in values.items()}]
        if "env" in templating:
            envs = label_values(prometheus, templating["env"]["query"]["query"])
            assert envs == [environment], envs
            combos = [{**combos[0], "$env": ".*"}, {**combos[0], "$env": environment}]
        return combos
    services = label_values(prometheus, templating["service"]["query"]["query"])
    assert set(OUR_SERVICES) <= set(services)
    env_query = templating["env"]["query"]["query"]
    combos = [{"$service": ".*", "$env": ".*"}, {"$service": ".*", "$env": environment}]
    for service in services:
        envs = label_values(prometheus, substitute(env_query, {"$service": service}))
        assert envs == [environment], (service, envs)
        combos.append({"$service": service, "$env": envs[0]})
    return combos


def panel_queries(
    prometheus: Prometheus, environment: str, *, grafana_macros: bool = True
) -> tuple[list[Query], list[Query]]:
    """Every Prometheus target of every committed dashboard: (with the variables at All,
    per service where the panel has data for every service)."""
    queries: list[Query] = []
    per_service: list[Query] = []
    # Services that handle requests (the canary only makes them): their RED panels.
    servers = set(
        label_values(
            prometheus,
            'label_values(traces_spanmetrics_calls_total{span_kind="SPAN_KIND_SERVER"},'
            " service_name)",
        )
    )
    for board in dashboards():
        combos = variable_combos(prometheus, board, environment)
        for panel in panels(board):
            for target in panel.get("targets", []):
                if target["datasource"]["type"] != "prometheus":
                    continue
                for variables in combos:
                    query = Query(
                        f"{board['uid']} / {panel['title']} / {target['refId']} {variables}",
                        substitute(target["expr"], variables, grafana_macros=grafana_macros),
                        instant=bool(target.get("instant")),
                        datasource=target["datasource"]["uid"],
                    )
                    if (
                        variables.get("$service", ".*") == ".*"
                        and variables.get("$env", ".*") == ".*"
                    ):
                        queries.append(query)  # the default: All
                    elif variables.get("$service", ".*") == ".*":
                        per_service.append(query)  # one environment: every panel
                    elif (
                        variables["$service"] in servers
                        and "SPAN_KIND_SERVER" in target["expr"]
                        and "http_route" not in target["expr"]
                        and panel["type"] != "heatmap"
                    ):
                        # Every service handles requests (the gateway's have no HTTP
                        # route): its RED-by-span panels have data.
                        per_service.append(query)
    return queries, per_service


# ------------------------------------------------------------------ what a query reads


_MATCH_OPS = {"=": "=", "!=": "!=", "=~": "=~", "!~": "!~"}


def selectors(prometheus: Prometheus, expr: str) -> list[str]:
    """Every vector and range selector of `expr` as a series selector
    (`{__name__="m", a=~"b"}`), from Prometheus' parser: its AST, not a regex over text."""
    response = prometheus.http.get("/api/v1/parse_query", params={"query": substitute(expr, {})})
    assert response.status_code == 200, f"{expr}: {response.text}"
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        if node.get("type") in ("vectorSelector", "matrixSelector") and "matchers" in node:
            matchers = ", ".join(
                f"{m['name']}{_MATCH_OPS[m['type']]}{json.dumps(m['value'])}"
                for m in node["matchers"]
            )
            found.append("{" + matchers + "}")
        for value in node.values():
            walk(value)

    walk(response.json()["data"])
    return found


def selectors_without_series(prometheus: Prometheus, queries: list[Query]) -> dict[str, str]:
    """selector -> the first query using it, for each selector with no series over the
    test's time range."""
    users: dict[str, str] = {}
    for query in queries:
        for selector in selectors(prometheus, query.expr):
            users.setdefault(selector, query.where)
    now = time.time()
    missing = {}
    for selector, where in users.items():
        response = prometheus.http.get(
            "/api/v1/series",
            params={"match[]": selector, "start": now - LOOKBACK_S, "end": now},
        )
        response.raise_for_status()
        if not response.json()["data"]:
            missing[selector] = where
    return missing


def alert_list_panels(boards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for board in boards for p in panels(board) if p["type"] == "alertlist"]


def log_panel_queries(boards: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(where, LogQL) of every Loki target."""
    return [
        (f"{board['uid']} / {panel['title']} / {target['refId']}", target["expr"])
        for board in boards
        for panel in panels(board)
        for target in panel.get("targets", [])
        if target["datasource"]["type"] == "loki"
    ]


async def drive_fallbacks(
    token: str, simulator: Simulator, gateway_url: str = GATEWAY
) -> dict[str, int]:
    """With provider-proxy running FALLBACK_MAP: GLM fails, its calls are answered by Kimi
    (fallbacks that work); then both fail (fallbacks that fail). Returns the outcomes."""
    outcomes = {"ok": 0, "error": 0}
    async with GatewaySession.open(token, gateway_url) as session:
        for faulty, rounds in ((("glm",), 8), (("glm", "kimi"), 4)):
            for provider in faulty:
                simulator.set_fault("error_500", 1.0, provider=provider)
            try:
                for _ in range(rounds):
                    reply = await call(session, "chat", {"prompt": "fall back", "model": GLM_MODEL})
                    outcomes["ok" if reply["op"] == "call_tool_res" else "error"] += 1
                    # Over several metric exports, so that rate() sees the counter rise.
                    await asyncio.sleep(1)
            finally:
                simulator.clear_faults()
        # Both breakers close after their cooldown and a successful half-open probe.
        deadline = time.monotonic() + 60
        for model in (KIMI_MODEL, GLM_MODEL):
            while (await call(session, "chat", {"prompt": "back?", "model": model}))[
                "op"
            ] != "call_tool_res":
                assert time.monotonic() < deadline, f"{model}: circuit did not close"
                await asyncio.sleep(1)
        # Healthy again, so the last minute's windows hold ordinary calls too.
        await healthy_round(session)
    return outcomes


# Selectors of events the dashboard traffic does not cause, and why their absence proves
# nothing wrong:
# - the event matchers below, on a selector whose twin without the matcher has series
#   (errors of calls that all succeeded here; the twin proves the metric and the other
#   labels are spelled right);
# - the collector's failure counters, which the collector creates with their first event
#   (the fault suite, tests/faults, makes exporters fail).
EVENT_MATCHERS = ('status_code="STATUS_CODE_ERROR"', 'error_type="queue_full"')
FIRST_EVENT_METRICS = (
    "otelcol_exporter_send_failed_spans_total",
    "otelcol_exporter_send_failed_metric_points_total",
    "otelcol_exporter_send_failed_log_records_total",
    "otelcol_processor_tail_sampling_early_releases_from_cache_decision_total",
)


def excused(prometheus: Prometheus, selector: str) -> bool:
    """Whether a selector without series is one of the events above."""
    if any(f'__name__="{name}"' in selector for name in FIRST_EVENT_METRICS):
        return True
    for matcher in EVENT_MATCHERS:
        if matcher in selector:
            twin = selector.replace(f"{matcher}, ", "").replace(f", {matcher}", "")
            now = time.time()
            response = prometheus.http.get(
                "/api/v1/series",
                params={"match[]": twin, "start": now - LOOKBACK_S, "end": now},
            )
            response.raise_for_status()
            return bool(response.json()["data"])
    return False
