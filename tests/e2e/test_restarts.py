"""End-to-end: what the dashboards say one minute after a service restart, on an idle
system, and at the first error of a new process.

The services push their metrics (OTLP): when a process dies its series just stop, and
Prometheus answers with their last sample for 5 minutes. The scenario, in order (the
tests of this module share one restart and run in file order):

1. provider-proxy fails every GLM call until its GLM circuit breaker is not closed, and
   Prometheus has that state; then it is killed (SIGKILL: no goodbye export) and started
   again. The new process starts with a closed breaker.
2. One minute after the restart, the LLM dashboard's "Circuit breaker state" says closed,
   while the dead process's last sample (open or half-open) is still in Prometheus: the
   panel leaves out instances that stopped exporting (exai:instance:stale).
3. That minute had no calls: every stat panel shows a number or words ("no traffic",
   "not configured", "no data from …"), never NaN or "No data"; so do the ratio time
   series' last points.
4. The new process's error counters exist at 0 before its first error, so that one
   error shows in rate() — the "GLM: errors/s" card is above 0.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest

from tests.e2e.helpers import GatewaySession, Prometheus, Simulator, eventually
from tests.support.dashboards import GLM_MODEL, call, dashboards, panels, substitute
from tests.support.stack import RunningStack

pytestmark = pytest.mark.e2e

PROXY = "provider-proxy"
GLM_STATE = 'exai_provider_circuit_state{gen_ai_provider_name="glm"}'
# The dashboards' variables at their defaults (All).
DEFAULTS = {"$env": ".*", "$service": ".*", "$correlation_id": ""}
OUR_BOARDS = ("exai-overview", "exai-llm", "exai-service")


def _panel(uid: str, title: str) -> dict[str, Any]:
    (board,) = [b for b in dashboards() if b["uid"] == uid]
    (panel,) = [p for p in panels(board) if p["title"] == title]
    return panel


def _instant(prometheus: Prometheus, expr: str) -> list[tuple[dict[str, str], float]]:
    response = prometheus.http.get("/api/v1/query", params={"query": expr})
    assert response.status_code == 200, f"{expr}: {response.text}"
    return [(r["metric"], float(r["value"][1])) for r in response.json()["data"]["result"]]


def _proxy_instances(prometheus: Prometheus, within_s: float = 12) -> set[str]:
    """provider-proxy processes whose last export is at most `within_s` old."""
    rows = _instant(
        prometheus,
        "time() - timestamp(otel_sdk_processor_span_queue_capacity"
        f'{{service_name="{PROXY}"}}) < {within_s}',
    )
    return {labels["service_instance_id"] for labels, _ in rows}


def _the_running_proxy(prometheus: Prometheus) -> str | None:
    """The one proxy process exporting now. A process killed a moment ago still looks
    recent for a few seconds (the previous module restarts the proxy), so: the same single
    instance recent twice, 10 s apart."""
    first = _proxy_instances(prometheus, within_s=8)
    time.sleep(10)
    second = _proxy_instances(prometheus, within_s=8)
    return next(iter(first)) if len(first) == 1 and first == second else None


async def _fail_glm_until(prometheus: Prometheus, instance: str, token: str) -> None:
    """GLM calls (failing) until Prometheus holds a not-closed breaker state for GLM
    from `instance`."""
    selector = f'{GLM_STATE[:-1]}, service_instance_id="{instance}"}}'
    deadline = time.monotonic() + 90
    async with GatewaySession.open(token) as session:
        while not _instant(prometheus, f"{selector} >= 1"):
            assert time.monotonic() < deadline, "GLM's breaker never left closed"
            reply = await call(session, "chat", {"prompt": "break it", "model": GLM_MODEL})
            assert reply["op"] == "error", reply
            await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
def restart(stack: RunningStack, simulator: Simulator, prometheus: Prometheus) -> dict[str, Any]:
    old = eventually(lambda: _the_running_proxy(prometheus), timeout_s=90)
    simulator.set_fault("error_500", 1.0, provider="glm")
    try:
        asyncio.run(_fail_glm_until(prometheus, old, stack.ws_token))
        stack.kill(PROXY)  # SIGKILL: its last export holds the open breaker
    finally:
        simulator.clear_faults()
    stack.restart(PROXY)
    restarted_at = time.monotonic()
    (new,) = eventually(lambda: (_proxy_instances(prometheus) - {old}) or None, timeout_s=60)
    return {"old": old, "new": new, "at": restarted_at}


def test_gauge_panels_follow_the_new_process_one_minute_after_a_restart(
    restart: dict[str, Any], prometheus: Prometheus
) -> None:
    time.sleep(max(0.0, restart["at"] + 60 - time.monotonic()))
    # The dead process's last sample is still there: a plain max() would say "open".
    dead = _instant(prometheus, f'{GLM_STATE[:-1]}, service_instance_id="{restart["old"]}"}}')
    assert dead and dead[0][1] >= 1, dead
    assert _instant(prometheus, f"max({GLM_STATE})")[0][1] >= 1
    stale = _instant(prometheus, f'exai:instance:stale{{service_name="{PROXY}"}}')
    stale_ids = {labels["service_instance_id"] for labels, _ in stale}
    assert restart["old"] in stale_ids and restart["new"] not in stale_ids, stale_ids

    panel = _panel("exai-llm", "Circuit breaker state")
    shown = {
        labels["gen_ai_provider_name"]: value
        for labels, value in _instant(prometheus, substitute(panel["targets"][0]["expr"], DEFAULTS))
    }
    assert shown == {"kimi": 0, "glm": 0}, shown
    # The page follows the panel: the new proxy's breaker is closed.
    assert not _instant(
        prometheus,
        'ALERTS{alertname="ProviderCircuitOpen", gen_ai_provider_name="glm", alertstate="firing"}',
    )


def _shown(panel: dict[str, Any], values: list[float]) -> str:
    """What a stat panel displays for these values (the first series): its noValue, a
    value mapping's text, or the number."""
    defaults = panel["fieldConfig"]["defaults"]
    if not values:
        return str(defaults.get("noValue") or "No data")
    value = values[0]
    for mapping in defaults.get("mappings", []):
        if mapping["type"] == "special" and math.isnan(value):
            if mapping["options"]["match"] in ("nan", "null+nan"):
                return str(mapping["options"]["result"]["text"])
        if mapping["type"] == "value" and not math.isnan(value):
            for key, result in mapping["options"].items():
                if float(key) == value:
                    return str(result["text"])
    return "NaN" if math.isnan(value) else f"{value:g}"


def test_an_idle_system_shows_values_or_words_not_nan_or_no_data(
    restart: dict[str, Any], prometheus: Prometheus
) -> None:
    # Runs right after the restart test: no call for over a minute ($__rate_interval).
    shown: dict[str, str] = {}
    ratio_points: dict[str, list[float]] = {}
    for board in dashboards():
        if board["uid"] not in OUR_BOARDS:
            continue
        for panel in panels(board):
            targets = [t for t in panel.get("targets", []) if "expr" in t]
            if panel["type"] == "stat":
                expr = substitute(targets[0]["expr"], DEFAULTS)
                values = [v for _, v in _instant(prometheus, expr)]
                shown[f"{board['uid']} / {panel['title']}"] = _shown(panel, values)
            elif (
                panel["type"] == "timeseries"
                and panel["fieldConfig"]["defaults"].get("unit") == "percentunit"
            ):
                expr = substitute(targets[0]["expr"], DEFAULTS)
                ratio_points[f"{board['uid']} / {panel['title']}"] = [
                    v for _, v in _instant(prometheus, expr)
                ]
                if any(math.isnan(v) for v in ratio_points[f"{board['uid']} / {panel['title']}"]):
                    shown[f"{board['uid']} / {panel['title']}"] = _shown(panel, [float("nan")])
    bad = {title: text for title, text in shown.items() if text in ("NaN", "No data")}
    assert not bad, bad
    # The minute really was idle: the provider cards' averages have no call to average.
    assert shown["exai-overview / Kimi: average response time"] == "no traffic", shown
    # The gauges say a number for the running gateway (the canary may hold a connection).
    for title in ("Calls in flight", "Active WebSocket connections"):
        assert shown[f"exai-overview / {title}"].isdigit(), shown


def test_first_error_of_a_new_process_shows_in_rate(
    restart: dict[str, Any], stack: RunningStack, simulator: Simulator, prometheus: Prometheus
) -> None:
    errors = (
        'exai_provider_requests_total{gen_ai_provider_name="glm", exai_outcome="error",'
        f' service_instance_id="{restart["new"]}"}}'
    )
    # Created at 0 at start-up: rate() has a sample before the first error to compare with.
    before = [v for _, v in _instant(prometheus, errors)]
    assert before and set(before) == {0}, f"no 0 before the first error: {before}"

    async def one_failed_call() -> None:
        async with GatewaySession.open(stack.ws_token) as session:
            reply = await call(session, "chat", {"prompt": "first error", "model": GLM_MODEL})
            assert reply["op"] == "error", reply

    simulator.set_fault("error_500", 1.0, provider="glm")
    try:
        asyncio.run(one_failed_call())
    finally:
        simulator.clear_faults()
    card = _panel("exai-overview", "GLM: errors/s")
    expr = substitute(card["targets"][0]["expr"], DEFAULTS)
    eventually(lambda: [v for _, v in _instant(prometheus, expr) if v > 0] or None, timeout_s=30)
