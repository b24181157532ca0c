"""The latency the gateway controls, through the real gateway, proxy and simulator: time
to the first streamed chunk, overhead net of the provider's time (as the proxy reports
it), the per-tool objective, and the client id that reaches the proxy's spend metrics."""

from __future__ import annotations

import json
from typing import Any

import pytest

from exai_telemetry import names
from tests.integration.ws_gateway.stack import TIME_SCALE, Stack, final, native
from tests.support.telemetry import metric_points

pytestmark = pytest.mark.integration

LATENCY_S = 0.3
CAROL = "carol-token-for-tests-0123456789"


def one_point(reader: Any, metric: str, **attributes: str) -> Any:
    (point,) = [
        p
        for a, p in metric_points(reader, metric)
        if all(a.get(k) == v for k, v in attributes.items())
    ]
    return point


def objective(reader: Any) -> dict[tuple[str, str, str], int]:
    return {
        (a[names.TOOL], a[names.SLO_INDICATOR], a[names.SLO_RESULT]): p.value
        for a, p in metric_points(reader, names.M_GATEWAY_LATENCY_OBJECTIVE)
        if p.value
    }


async def test_a_slow_model_is_not_gateway_overhead(stack: Stack) -> None:
    await stack.simulator("POST", "/admin/latency", {"ms": LATENCY_S * 1000, "tokens_per_s": 0})
    gateway, reader = await stack.start_gateway(
        EXAI_SLO_OVERHEAD_S=2 * TIME_SCALE,
        EXAI_SLO_FIRST_CHUNK_S_BY_TOOL=json.dumps({"chat": LATENCY_S / 3}),
    )
    async with native(gateway) as client:
        streamed = await client.run("chat", {"prompt": "stream it"}, "s1", stream=True)
        plain = await client.run("chat", {"prompt": "all at once"}, "p1")
    assert final(streamed)["op"] == final(plain)["op"] == "call_tool_res"

    first = one_point(reader, names.M_GATEWAY_TIME_TO_FIRST_CHUNK, **{names.TOOL: "chat"})
    assert first.count == 1 and first.sum >= LATENCY_S  # the streamed call only
    duration = one_point(reader, names.M_GATEWAY_CALL_DURATION, **{names.OUTCOME: "ok"})
    overhead = one_point(reader, names.M_GATEWAY_OVERHEAD_DURATION, **{names.OUTCOME: "ok"})
    assert duration.count == overhead.count == 2
    # Each call waited at least LATENCY_S on the provider: none of it is overhead.
    assert 0 <= overhead.sum <= duration.sum - 2 * LATENCY_S
    # The first chunk took longer than chat's own threshold; the overhead was small.
    assert objective(reader) == {
        ("chat", "first_chunk", "missed"): 1,
        ("chat", "overhead", "met"): 2,
    }


async def test_consensus_subtracts_the_wall_time_on_providers_not_the_sum(stack: Stack) -> None:
    await stack.simulator("POST", "/admin/latency", {"ms": LATENCY_S * 1000, "tokens_per_s": 0})
    async with native(stack.gateway) as client:
        frames = await client.run("consensus", {"prompt": "two at once"}, "c1")
    assert final(frames)["op"] == "call_tool_res"
    duration = one_point(stack.reader, names.M_GATEWAY_CALL_DURATION, **{names.OUTCOME: "ok"})
    overhead = one_point(
        stack.reader, names.M_GATEWAY_OVERHEAD_DURATION, **{names.TOOL: "consensus"}
    )
    # Two models in parallel, each LATENCY_S: what remains is the gateway's and proxy's
    # own time (subtracting both waits would leave nothing, or less than nothing).
    assert 0 < overhead.sum <= duration.sum - LATENCY_S
    assert overhead.sum < duration.sum - LATENCY_S + 0.5 * LATENCY_S


async def test_the_callers_client_id_reaches_the_proxys_spend_metrics(stack: Stack) -> None:
    gateway, _ = await stack.start_gateway(EXAI_WS_TOKENS=json.dumps({"carol": CAROL}))
    async with native(gateway, token=CAROL) as client:
        assert final(await client.run("chat", {"prompt": "whose tokens?"}))["op"] == (
            "call_tool_res"
        )
    clients = {
        a[names.CLIENT_ID]
        for a, p in metric_points(stack.proxy_reader, names.M_PROVIDER_TOKENS)
        if p.value
    }
    assert clients == {"carol"}
    spend = {
        a[names.CLIENT_ID] for a, _ in metric_points(stack.proxy_reader, names.M_PROVIDER_COST)
    }
    assert spend == {"carol"}
