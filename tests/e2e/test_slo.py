"""The gateway's latency SLOs against the real pipeline (gateway -> collector ->
Prometheus -> rules -> Alertmanager), with the end-to-end rules overlay
(deploy/prometheus/rules/e2e/slo.yml: the shipped rules, short fast-burn windows).

- A long answer is not slow: streamed calls that take longer than 5 s in all, but start
  at once, meet the first-chunk objective; the old "99 % of whole calls within 5 s"
  objective counted each of them as bad.
- A late first chunk is: with the provider waiting 6 s before its first token (above the
  gateway's default 5 s threshold), the first-chunk SLO pages, for this environment.
- The recording rules carry deployment_environment_name (the stack runs as "e2e").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.helpers import (
    AlertWebhook,
    CallResult,
    GatewaySession,
    Prometheus,
    Simulator,
    eventually,
    settled,
)
from tests.support.stack import RunningStack

ENV = 'deployment_environment_name="e2e"'
MODEL = "glm-4.5"
FIRST_CHUNK = 'exai_slo_indicator="first_chunk"'
OBJECTIVE = "exai_gateway_latency_objective_total"
MET = f'sum({OBJECTIVE}{{{ENV}, exai_tool="chat", {FIRST_CHUNK}, exai_slo_result="met"}})'
MISSED = f'sum({OBJECTIVE}{{{ENV}, exai_tool="chat", {FIRST_CHUNK}, exai_slo_result="missed"}})'
RECORDED = "exai:gateway_latency_objective_missed:ratio_rate5m"
PAGE = "GatewayFirstChunkBudgetBurnFast"


@pytest.fixture
def provider_reset(simulator: Simulator) -> Iterator[Simulator]:
    """The simulator back to its start-up pacing and no faults, whatever the test did."""
    yield simulator
    simulator.http.post("/admin/reset").raise_for_status()


async def _streamed_calls(stack: RunningStack, n: int) -> list[tuple[CallResult, float]]:
    async def one(i: int) -> tuple[CallResult, float]:
        async with GatewaySession.open(stack.ws_token) as session:
            started = time.monotonic()
            result = await session.call(
                "chat", {"prompt": f"e2e slo question {i}", "model": MODEL, "stream": True}
            )
            return result, time.monotonic() - started

    return list(await asyncio.gather(*(one(i) for i in range(n))))


def _counts(prometheus: Prometheus) -> tuple[float, float]:
    return (prometheus.scalar(MET) or 0.0, prometheus.scalar(MISSED) or 0.0)


async def test_long_streamed_answers_that_start_at_once_meet_the_first_chunk_objective(
    stack: RunningStack, provider_reset: Simulator, prometheus: Prometheus
) -> None:
    met_before, missed_before = settled(lambda: _counts(prometheus), quiet_s=12, timeout_s=90)
    # Tokens trickle at SIM_SLOW_TOKENS_PER_S (2/s): each answer takes well over 5 s.
    provider_reset.set_fault("slow_stream", provider="glm")
    calls = await _streamed_calls(stack, 4)
    assert all(result.ok for result, _ in calls), [r.frame for r, _ in calls]
    assert min(seconds for _, seconds in calls) > 5, [s for _, s in calls]

    def counted() -> tuple[float, float] | None:
        counts = _counts(prometheus)
        return counts if counts[0] >= met_before + 4 else None

    met, missed = eventually(counted, timeout_s=60)
    assert missed == missed_before, (met, missed)
    # The recorded ratio exists for this environment and indicator, and says 0 % missed
    # (>= 0: once the rules have seen the calls; before, a window without calls is 0/0).
    ratio = eventually(lambda: prometheus.query(f"{RECORDED}{{{ENV}, {FIRST_CHUNK}}} >= 0"), 60)
    assert [float(s["value"][1]) for s in ratio] == [0.0]
    assert not [a for a in prometheus.alerts() if a["labels"]["alertname"] == PAGE]


async def test_late_first_chunks_page_for_their_environment(
    stack: RunningStack,
    provider_reset: Simulator,
    prometheus: Prometheus,
    webhook: AlertWebhook,
) -> None:
    # The provider waits 6 s before its first token: every streamed call misses the
    # gateway's default 5 s threshold. Traffic goes on until the page is delivered.
    since = time.monotonic()
    provider_reset.http.post("/admin/latency", json={"ms": 6000}).raise_for_status()
    delivered: list[dict[str, Any]] = []
    deadline = since + 240
    while not delivered and time.monotonic() < deadline:
        calls = await _streamed_calls(stack, 4)
        assert all(result.ok for result, _ in calls), [r.frame for r, _ in calls]
        delivered = [
            alert
            for _, alert in webhook.alerts("firing", since, {PAGE})
            if alert["labels"].get("deployment_environment_name") == "e2e"
        ]
    assert delivered, f"{PAGE} not delivered within 240 s"
    labels = delivered[0]["labels"]
    assert labels["severity"] == "page" and labels["exai_slo_indicator"] == "first_chunk"
    missed = prometheus.query(f"{RECORDED}{{{ENV}, {FIRST_CHUNK}}}")
    assert missed and float(missed[0]["value"][1]) > 0.144
