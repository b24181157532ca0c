"""The latency the gateway controls: overhead (the call minus its provider waits), time
to the first streamed chunk, and the per-tool objective on both."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pydantic import ValidationError

from exai_telemetry import names
from exai_telemetry.settings import describe_validation_error
from tests.support.telemetry import CapturedTelemetry, metric_points
from ws_gateway.clients import ProviderWaits, current_provider_waits
from ws_gateway.settings import GatewaySettings
from ws_gateway.telemetry import CallScope, GatewayTelemetry, LatencyObjectives

TOKEN = "t" * 20


def settings(**env: str) -> GatewaySettings:
    return GatewaySettings.model_validate({"EXAI_WS_TOKEN": TOKEN, **env})


# --- the wait on providers: wall time, not a sum ----------------------------------------


def test_parallel_waits_count_once_and_gaps_not_at_all() -> None:
    waits = ProviderWaits()
    waits.add(0.0, 10.0, 4.0)  # 6..10
    waits.add(1.0, 9.0, 5.0)  # 4..9, overlaps the first
    waits.add(20.0, 21.0, 3.0)  # more than the request took: capped at 1 (20..21)
    waits.add(30.0, 31.0, 0.0)  # no provider time at all
    assert waits.wall_s() == pytest.approx(7.0)
    assert ProviderWaits().wall_s() == 0.0


# --- settings ---------------------------------------------------------------------------


def test_objective_defaults_and_per_tool_overrides() -> None:
    default = LatencyObjectives.of(settings())
    assert default.threshold_s("first_chunk", "chat") == 5.0
    assert default.threshold_s("overhead", "consensus") == 0.5
    tuned = LatencyObjectives.of(
        settings(
            EXAI_SLO_FIRST_CHUNK_S="3",
            EXAI_SLO_FIRST_CHUNK_S_BY_TOOL=json.dumps({"chat": 8}),
            EXAI_SLO_OVERHEAD_S_BY_TOOL=json.dumps({"consensus": 1.5, "status": 0.2}),
        )
    )
    assert tuned.threshold_s("first_chunk", "chat") == 8.0
    assert tuned.threshold_s("first_chunk", "consensus") == 3.0
    assert tuned.threshold_s("overhead", "consensus") == 1.5
    assert tuned.threshold_s("overhead", "chat") == 0.5
    assert settings(EXAI_SLO_OVERHEAD_S_BY_TOOL="").slo_overhead_s_by_tool == {}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EXAI_SLO_FIRST_CHUNK_S", "0"),
        ("EXAI_SLO_OVERHEAD_S", "soon"),
        ("EXAI_SLO_OVERHEAD_S", "inf"),
        ("EXAI_SLO_FIRST_CHUNK_S_BY_TOOL", "chat=5"),
        ("EXAI_SLO_FIRST_CHUNK_S_BY_TOOL", '["chat"]'),
        ("EXAI_SLO_OVERHEAD_S_BY_TOOL", '{"chatt": 1}'),
        ("EXAI_SLO_OVERHEAD_S_BY_TOOL", '{"chat": -1}'),
        ("EXAI_SLO_OVERHEAD_S_BY_TOOL", '{"chat": "1"}'),
        ("EXAI_SLO_OVERHEAD_S_BY_TOOL", '{"chat": true}'),
    ],
)
def test_bad_objectives_stop_start_up_naming_their_variable(name: str, value: str) -> None:
    with pytest.raises(ValidationError) as info:
        settings(**{name: value})
    message = describe_validation_error(GatewaySettings, info.value)
    assert message.startswith(f"invalid setting {name}:"), message
    assert "\n" not in message


# --- what a call records ----------------------------------------------------------------


@contextmanager
def a_call(gateway: GatewayTelemetry, tool: str = "chat") -> Iterator[CallScope]:
    with gateway.call(
        tool=tool,
        protocol="native",
        session_id="s",
        request_id="r",
        correlation_id="c",
        route="/",
        client_id="team-a",
    ) as scope:
        yield scope


def objective(reader: Any) -> dict[tuple[str, str, str], int]:
    return {
        (a[names.TOOL], a[names.SLO_INDICATOR], a[names.SLO_RESULT]): p.value
        for a, p in metric_points(reader, names.M_GATEWAY_LATENCY_OBJECTIVE)
        if p.value
    }


async def test_overhead_is_the_call_minus_the_wall_time_spent_on_providers(
    captured: CapturedTelemetry,
) -> None:
    telemetry, reader = captured.build("ws-gateway", settings())
    gateway = GatewayTelemetry(telemetry, LatencyObjectives(overhead_s=0.05))
    with a_call(gateway, "consensus") as scope:
        waits = current_provider_waits()
        assert waits is not None and waits.client_id == "team-a"
        started = time.perf_counter()
        await asyncio.sleep(0.3)
        # Two models asked in parallel, each 0.2 s on its provider: 0.2 s of wall time.
        waits.add(started, time.perf_counter(), 0.2)
        waits.add(started, time.perf_counter(), 0.2)
        scope.succeeded()
    assert current_provider_waits() is None  # only inside a call
    (duration,) = [p.sum for _, p in metric_points(reader, names.M_GATEWAY_CALL_DURATION)]
    ((attributes, overhead),) = metric_points(reader, names.M_GATEWAY_OVERHEAD_DURATION)
    assert attributes == {names.TOOL: "consensus", names.OUTCOME: "ok"}
    assert overhead.count == 1
    assert overhead.sum == pytest.approx(duration - 0.2, abs=0.002)
    # ~0.1 s of overhead against a 0.05 s objective; nothing streamed: no first chunk.
    assert objective(reader) == {("consensus", "overhead", "missed"): 1}
    assert not list(metric_points(reader, names.M_GATEWAY_TIME_TO_FIRST_CHUNK))


async def test_time_to_first_chunk_and_its_objective(captured: CapturedTelemetry) -> None:
    telemetry, reader = captured.build("ws-gateway", settings())
    objectives = LatencyObjectives(first_chunk_s_by_tool={"chat": 0.05}, overhead_s=10)
    gateway = GatewayTelemetry(telemetry, objectives)
    with a_call(gateway) as scope:
        await asyncio.sleep(0.1)
        scope.chunk_sent()
        await asyncio.sleep(0.05)
        scope.chunk_sent()  # only the first one counts
        scope.succeeded()
    ((attributes, first),) = metric_points(reader, names.M_GATEWAY_TIME_TO_FIRST_CHUNK)
    assert attributes == {names.TOOL: "chat"}
    assert first.count == 1 and 0.1 <= first.sum < 0.14
    # Seconds buckets, with the default objective (5 s) as a boundary.
    assert 5 in first.explicit_bounds and first.explicit_bounds[0] < 0.1
    assert objective(reader) == {
        ("chat", "first_chunk", "missed"): 1,
        ("chat", "overhead", "met"): 1,
    }


async def test_failed_calls_have_overhead_but_no_objective_event(
    captured: CapturedTelemetry,
) -> None:
    telemetry, reader = captured.build("ws-gateway", settings())
    gateway = GatewayTelemetry(telemetry)
    with pytest.raises(RuntimeError), a_call(gateway) as scope:
        scope.chunk_sent()
        raise RuntimeError("boom")
    ((attributes, _),) = metric_points(reader, names.M_GATEWAY_OVERHEAD_DURATION)
    assert attributes[names.OUTCOME] == "error"
    assert objective(reader) == {}


def test_every_series_the_slo_divides_exists_at_zero(captured: CapturedTelemetry) -> None:
    telemetry, reader = captured.build("ws-gateway", settings())
    GatewayTelemetry(telemetry)
    calls = {
        (a[names.TOOL], a[names.PROTOCOL], a[names.OUTCOME]): p.value
        for a, p in metric_points(reader, names.M_GATEWAY_CALLS)
    }
    assert len(calls) == 4 * 2 * 6 and set(calls.values()) == {0}
    assert calls[("chat", "mcp", "error")] == 0
    objectives = {
        (a[names.TOOL], a[names.SLO_INDICATOR], a[names.SLO_RESULT]): p.value
        for a, p in metric_points(reader, names.M_GATEWAY_LATENCY_OBJECTIVE)
    }
    assert len(objectives) == 4 * 2 * 2 and set(objectives.values()) == {0}
    assert objectives[("chat", "first_chunk", "missed")] == 0
