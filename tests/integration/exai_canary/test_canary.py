"""The canary against a real gateway (and its real provider-proxy, storage-adapter and
llm-simulator on loopback): what it proves when all is well, and how it reports each way
the gateway can fail an on-call engineer would want to hear about."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.trace import SpanKind, StatusCode

from exai_canary.app import SERVICE_NAME, create_app
from exai_canary.runner import Canary, Result
from exai_canary.settings import CanarySettings
from tests.integration.ws_gateway.stack import TOKEN, Stack, running_stack
from tests.support.asgi import serve_app
from tests.support.telemetry import CapturedTelemetry, metric_points

CANARY_TOKEN = "canary-token-for-tests-0123456789"
RUNNER_LOGGER = "exai_canary.runner"


@pytest.fixture
async def stack(captured: CapturedTelemetry, tmp_path: Path) -> AsyncIterator[Stack]:
    # The gateway knows the canary as a client of its own, besides `default`.
    tokens = f'{{"canary": "{CANARY_TOKEN}"}}'
    async with running_stack(captured, tmp_path, EXAI_WS_TOKENS=tokens) as running:
        yield running


def canary_for(
    captured: CapturedTelemetry, url: str, **env: Any
) -> tuple[Canary, InMemoryMetricReader]:
    values: dict[str, Any] = {
        "EXAI_CANARY_GATEWAY_URL": url,
        "EXAI_WS_TOKEN": TOKEN,
        "EXAI_WS_TOKENS": f'{{"canary": "{CANARY_TOKEN}"}}',
        **env,
    }
    settings = CanarySettings.model_validate(values)
    telemetry, reader = captured.build(SERVICE_NAME, settings)
    return Canary(settings, telemetry), reader


def counts(reader: InMemoryMetricReader) -> dict[tuple[str, str], float]:
    return {
        (attrs["exai.canary.check"], attrs["exai.outcome"]): point.value
        for attrs, point in metric_points(reader, "exai.canary.checks")
    }


def last_success(reader: InMemoryMetricReader) -> dict[str, float]:
    return {
        attrs["exai.canary.check"]: point.value
        for attrs, point in metric_points(reader, "exai.canary.last_success")
    }


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == RUNNER_LOGGER and r.levelno == logging.WARNING
    ]


async def test_a_status_check_is_a_real_call_whose_trace_the_correlation_id_finds(
    stack: Stack, captured: CapturedTelemetry
) -> None:
    canary, reader = canary_for(captured, stack.gateway.url)
    # Before any check: both outcomes exist at 0 (a first failure is a rate, not a new
    # series), and there is no "last success" to claim.
    assert counts(reader) == {("status", "ok"): 0, ("status", "error"): 0}
    assert last_success(reader) == {}

    (check,) = canary.checks
    result = await canary.run_check(check)

    assert (result.outcome, result.reason) == ("ok", None), result
    (span,) = captured.spans_of(SERVICE_NAME)
    assert span.name == "canary status"
    assert span.kind is SpanKind.INTERNAL
    assert span.parent is None
    attributes = dict(span.attributes or {})
    assert attributes["exai.correlation_id"] == result.correlation_id
    assert result.correlation_id.startswith("canary-")
    assert attributes["exai.outcome"] == "ok"
    assert span.status.status_code is StatusCode.UNSET
    # The gateway served it as the canary's own client, under the same correlation ID,
    # and the canary's span names the trace the gateway started for it.
    (served,) = [
        s
        for s in captured.spans_of("ws-gateway")
        if (s.attributes or {}).get("exai.correlation_id") == result.correlation_id
    ]
    assert served.name == "ws call_tool status"
    assert (served.attributes or {})["exai.client.id"] == "canary"
    assert attributes["exai.canary.gateway_trace_id"] == format(served.context.trace_id, "032x")
    assert counts(reader) == {("status", "ok"): 1, ("status", "error"): 0}
    assert set(last_success(reader)) == {"status"}
    (duration,) = [p for _, p in metric_points(reader, "exai.canary.check.duration")]
    assert duration.count == 1 and duration.sum == pytest.approx(result.duration_s)
    # Nothing secret leaves the process.
    assert CANARY_TOKEN not in str([dict(s.attributes or {}) for s in captured.spans()])


async def test_a_stopped_gateway_is_counted_logged_once_and_the_recovery_noticed(
    stack: Stack, captured: CapturedTelemetry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=RUNNER_LOGGER)
    canary, reader = canary_for(captured, stack.gateway.url)
    (check,) = canary.checks
    port = stack.gateway.port
    assert (await canary.run_check(check)).outcome == "ok"
    seen = last_success(reader)["status"]

    await stack.gateway.stop(grace_s=0)
    failures = [await canary.run_check(check) for _ in range(3)]

    assert [(r.outcome, r.reason) for r in failures] == [("error", "connect")] * 3
    assert counts(reader) == {("status", "ok"): 1, ("status", "error"): 3}
    # The last success stays where it was: its age is what the silence alert reads.
    assert last_success(reader)["status"] == seen
    (warning,) = warnings(caplog)
    assert "status check failing: connect" in warning
    assert failures[0].correlation_id in warning
    spans = [s for s in captured.spans_of(SERVICE_NAME) if s.status.status_code is StatusCode.ERROR]
    assert len(spans) == 3
    assert {(s.attributes or {}).get("error.type") for s in spans} == {"connect"}

    # The gateway is back on the same address: the next check succeeds, said once.
    await stack.start_gateway(EXAI_WS_TOKENS=f'{{"canary": "{CANARY_TOKEN}"}}', EXAI_WS_PORT=port)
    caplog.clear()
    assert (await canary.run_check(check)).outcome == "ok"
    assert (await canary.run_check(check)).outcome == "ok"
    infos = [r.getMessage() for r in caplog.records if r.name == RUNNER_LOGGER]
    assert infos == [infos[0]] and "ok again after 3 failed" in infos[0]
    assert last_success(reader)["status"] > seen


async def test_a_refused_token_is_an_unauthorized_failure(
    stack: Stack, captured: CapturedTelemetry
) -> None:
    canary, _ = canary_for(
        captured,
        stack.gateway.url,
        EXAI_WS_TOKENS='{"canary": "not-the-token-the-gateway-knows"}',
    )
    result = await canary.run_check(canary.checks[0])
    assert (result.outcome, result.reason) == ("error", "unauthorized")
    assert "not-the-token" not in result.detail


async def test_a_gateway_that_cannot_serve_calls_fails_the_status_check(
    stack: Stack, captured: CapturedTelemetry
) -> None:
    # provider-proxy (required) unreachable: the gateway answers `status`, unhealthy.
    gateway, _ = await stack.start_gateway(
        EXAI_WS_TOKENS=f'{{"canary": "{CANARY_TOKEN}"}}', EXAI_PROVIDER_URL="http://127.0.0.1:9"
    )
    canary, reader = canary_for(captured, gateway.url)
    result = await canary.run_check(canary.checks[0])
    assert (result.outcome, result.reason) == ("error", "unhealthy")
    assert counts(reader)[("status", "error")] == 1


async def test_chat_is_off_unless_a_model_is_chosen(
    stack: Stack, captured: CapturedTelemetry
) -> None:
    canary, reader = canary_for(captured, stack.gateway.url, EXAI_CANARY_CHAT_MODEL="")
    assert [c.name for c in canary.checks] == ["status"]
    assert {check for check, _ in counts(reader)} == {"status"}


async def test_a_chat_check_asks_the_chosen_model(
    stack: Stack, captured: CapturedTelemetry
) -> None:
    canary, reader = canary_for(
        captured, stack.gateway.url, EXAI_CANARY_CHAT_MODEL="kimi-k2-0905-preview"
    )
    chat = next(c for c in canary.checks if c.name == "chat")
    before = (await stack.stats())["requests"].get("kimi", 0)

    result = await canary.run_check(chat)

    assert (result.outcome, result.reason) == ("ok", None), result
    assert (await stack.stats())["requests"]["kimi"] == before + 1
    assert counts(reader)[("chat", "ok")] == 1
    assert (captured.spans_of(SERVICE_NAME)[-1].attributes or {})["exai.canary.check"] == "chat"


async def test_an_error_frame_fails_the_check_with_the_gateways_code(
    stack: Stack, captured: CapturedTelemetry
) -> None:
    await stack.simulator("POST", "/admin/faults", {"mode": "error_500"})
    canary, _ = canary_for(
        captured, stack.gateway.url, EXAI_CANARY_CHAT_MODEL="kimi-k2-0905-preview"
    )
    chat = next(c for c in canary.checks if c.name == "chat")
    result = await canary.run_check(chat)
    assert (result.outcome, result.reason) == ("error", "PROVIDER_ERROR"), result


async def test_a_call_that_hangs_fails_at_the_checks_timeout(
    stack: Stack, captured: CapturedTelemetry
) -> None:
    await stack.simulator("POST", "/admin/faults", {"mode": "hang"})
    canary, _ = canary_for(
        captured,
        stack.gateway.url,
        EXAI_CANARY_CHAT_MODEL="kimi-k2-0905-preview",
        EXAI_CANARY_CHAT_TIMEOUT_S=1,
    )
    chat = next(c for c in canary.checks if c.name == "chat")
    result = await canary.run_check(chat)
    assert (result.outcome, result.reason) == ("error", "timeout"), result
    assert 1 <= result.duration_s < 3


async def test_the_process_is_ready_while_its_loop_runs_whatever_the_gateway_does(
    captured: CapturedTelemetry,
) -> None:
    # Nothing listens on port 9: the canary is ready; /health shows the gateway down.
    settings = CanarySettings.model_validate(
        {"EXAI_CANARY_GATEWAY_URL": "ws://127.0.0.1:9", "EXAI_WS_TOKEN": TOKEN}
    )
    telemetry, reader = captured.build(SERVICE_NAME, settings)
    app = create_app(settings, telemetry)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as http:
        canary: Canary = app.state.canary

        async def checked() -> Result | None:
            return canary.states["status"].last

        for _ in range(200):
            if await checked() is not None:
                break
            await asyncio.sleep(0.02)
        assert (await http.get("/health/live")).status_code == 200
        ready = await http.get("/health/ready")
        assert ready.status_code == 200
        body = (await http.get("/health")).json()
        assert body["status"] == "degraded"
        assert body["components"]["gateway"]["status"] == "down"
        assert body["components"]["gateway"]["error_type"] == "connect"
    assert counts(reader)[("status", "error")] >= 1
    assert not canary.running  # stopped with the app
