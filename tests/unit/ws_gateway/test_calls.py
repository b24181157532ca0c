"""CallRunner + telemetry: every way a call ends is one ending, one span, one metric point."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from exai_telemetry.setup import Telemetry
from tests.support.servers import free_port
from tests.support.telemetry import CapturedTelemetry, metric_points
from ws_gateway.calls import CallRequest, CallRunner
from ws_gateway.clients import ProviderClient, StorageClient, build_http_client
from ws_gateway.errors import ErrorCode
from ws_gateway.limits import InflightLimiter
from ws_gateway.settings import GatewaySettings
from ws_gateway.telemetry import CallScope, GatewayTelemetry
from ws_gateway.tools import Toolbox, ToolResult

StatusFn = Callable[[str], Awaitable[dict[str, Any]]]


@dataclass
class RecordingSink:
    """Stands in for a connection: records what the call reported."""

    events: list[tuple[str, Any]] = field(default_factory=list)

    async def progress(self, call: CallRequest, stage: str, message: str) -> None:
        self.events.append(("progress", stage))

    async def chunk(self, call: CallRequest, text: str) -> None:
        self.events.append(("chunk", text))

    async def succeeded(self, call: CallRequest, result: ToolResult, scope: CallScope) -> None:
        self.events.append(("ok", (result.outputs, scope.correlation_id, scope.trace_id)))

    async def failed(
        self, call: CallRequest, code: ErrorCode, message: str, scope: CallScope
    ) -> None:
        self.events.append(("failed", (code, message)))

    async def cancelled(self, call: CallRequest) -> None:
        self.events.append(("cancelled", None))

    def endings(self) -> list[tuple[str, Any]]:
        return [e for e in self.events if e[0] in ("ok", "failed", "cancelled")]


@dataclass
class Rig:
    runner: CallRunner
    limiter: InflightLimiter
    telemetry: Telemetry
    reader: Any
    status: dict[str, StatusFn]
    accepting: list[bool]


@pytest.fixture
async def rig(captured: CapturedTelemetry) -> AsyncIterator[Rig]:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    settings = GatewaySettings.model_validate(
        {"EXAI_WS_TOKEN": "t" * 20, "EXAI_PROVIDER_URL": dead, "EXAI_STORAGE_URL": dead}
    )
    telemetry, reader = captured.build("ws-gateway", settings)
    provider_http = build_http_client(dead, 2, telemetry)
    storage_http = build_http_client(dead, 2, telemetry)

    async def default_status(session_id: str) -> dict[str, Any]:
        return {"session": session_id}

    status: dict[str, StatusFn] = {"fn": default_status}

    async def status_source(session_id: str) -> dict[str, Any]:
        return await status["fn"](session_id)

    toolbox = Toolbox(
        settings, ProviderClient(provider_http), StorageClient(storage_http), status_source
    )
    limiter = InflightLimiter(per_session=2, global_max=3)
    accepting = [True]
    runner = CallRunner(
        toolbox,
        limiter,
        GatewayTelemetry(telemetry),
        call_timeout_s=0.2,
        accepting=lambda: accepting[0],
    )
    yield Rig(runner, limiter, telemetry, reader, status, accepting)
    await provider_http.aclose()
    await storage_http.aclose()


def request(
    tool: str = "status", request_id: Any = "r1", session: str = "s1", **arguments: Any
) -> CallRequest:
    return CallRequest("native", session, request_id, tool, dict(arguments), "corr-1", False, "/")


def outcomes(reader: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for attrs, point in metric_points(reader, "exai.gateway.calls"):
        counts[attrs["exai.outcome"]] = counts.get(attrs["exai.outcome"], 0) + point.value
    return counts


async def test_a_successful_call_is_one_server_span_and_one_ok(
    rig: Rig, captured: CapturedTelemetry
) -> None:
    sink = RecordingSink()
    await rig.runner.run(request(), sink, streaming=False)
    (ending,) = sink.endings()
    assert ending[0] == "ok"
    outputs, correlation_id, trace_id = ending[1]
    assert '"session": "s1"' in outputs[0]["text"]
    (span,) = captured.spans()
    assert span.name == "ws call_tool status" and span.kind is SpanKind.SERVER
    assert span.parent is None
    assert trace_id == format(span.context.trace_id, "032x")
    assert span.attributes is not None
    assert span.attributes["exai.correlation_id"] == correlation_id == "corr-1"
    assert span.attributes["exai.outcome"] == "ok"
    assert span.attributes["exai.tool"] == "status"
    assert span.status.status_code is StatusCode.UNSET
    assert outcomes(rig.reader) == {"ok": 1}
    assert rig.limiter.global_inflight == 0


async def test_provider_unreachable_is_provider_error(
    rig: Rig, captured: CapturedTelemetry
) -> None:
    sink = RecordingSink()
    await rig.runner.run(request("listmodels"), sink, streaming=False)
    ((kind, (code, message)),) = sink.endings()
    assert (kind, code) == ("failed", ErrorCode.PROVIDER_ERROR)
    assert "unreachable" in message
    server = next(s for s in captured.spans() if s.name == "ws call_tool listmodels")
    assert server.status.status_code is StatusCode.ERROR
    assert server.attributes is not None and server.attributes["error.type"] == "PROVIDER_ERROR"
    # The httpx client span is a child of the call span.
    client = next(s for s in captured.spans() if s.kind is SpanKind.CLIENT)
    assert client.parent is not None and client.parent.span_id == server.context.span_id
    assert client.attributes is not None and client.attributes["exai.correlation_id"] == "corr-1"
    assert outcomes(rig.reader) == {"error": 1}


async def test_validation_error(rig: Rig) -> None:
    sink = RecordingSink()
    await rig.runner.run(request("chat", temperature=9), sink, streaming=False)
    ((kind, (code, message)),) = sink.endings()
    assert kind == "failed"
    assert code == ErrorCode.VALIDATION_ERROR and "prompt" in message and "temperature" in message
    assert outcomes(rig.reader) == {"error": 1}


async def test_timeout(rig: Rig, captured: CapturedTelemetry) -> None:
    async def slow(session_id: str) -> dict[str, Any]:
        await asyncio.sleep(5)
        return {}

    rig.status["fn"] = slow
    sink = RecordingSink()
    await rig.runner.run(request(), sink, streaming=False)
    ((kind, (code, message)),) = sink.endings()
    assert kind == "failed"
    assert code == ErrorCode.TIMEOUT and "0.2s" in message
    assert outcomes(rig.reader) == {"timeout": 1}
    assert captured.spans()[0].attributes["exai.outcome"] == "timeout"  # type: ignore[index]
    assert rig.limiter.global_inflight == 0


async def test_an_unexpected_exception_is_internal_error_without_details(rig: Rig) -> None:
    async def broken(session_id: str) -> dict[str, Any]:
        raise KeyError("internal detail")

    rig.status["fn"] = broken
    sink = RecordingSink()
    await rig.runner.run(request(), sink, streaming=False)
    assert sink.endings() == [("failed", (ErrorCode.INTERNAL_ERROR, "internal error"))]


async def test_cancel_reports_cancelled_and_reraises(rig: Rig, captured: CapturedTelemetry) -> None:
    started = asyncio.Event()

    async def hang(session_id: str) -> dict[str, Any]:
        started.set()
        await asyncio.sleep(5)
        return {}

    rig.status["fn"] = hang
    sink = RecordingSink()
    task = asyncio.create_task(rig.runner.run(request(), sink, streaming=False))
    await started.wait()
    assert rig.limiter.global_inflight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sink.endings() == [("cancelled", None)]
    assert rig.limiter.global_inflight == 0
    span = captured.spans()[0]
    assert span.attributes is not None and span.attributes["exai.outcome"] == "cancelled"
    assert span.status.status_code is StatusCode.UNSET
    assert outcomes(rig.reader) == {"cancelled": 1}


async def test_over_capacity_is_rejected_and_counted(rig: Rig) -> None:
    release = asyncio.Event()

    async def hold(session_id: str) -> dict[str, Any]:
        await release.wait()
        return {}

    rig.status["fn"] = hold
    sinks = [RecordingSink() for _ in range(4)]
    tasks = [
        asyncio.create_task(
            rig.runner.run(request(request_id=i, session=f"s{i % 2}"), sinks[i], streaming=False)
        )
        for i in range(4)
    ]
    await asyncio.sleep(0.02)
    release.set()
    await asyncio.gather(*tasks)
    endings = [s.endings()[0] for s in sinks]
    rejected = [e for e in endings if e[0] == "failed"]
    assert len(rejected) == 1 and rejected[0][1][0] == ErrorCode.OVER_CAPACITY
    assert outcomes(rig.reader) == {"ok": 3, "rejected": 1}
    assert rig.limiter.global_inflight == 0


async def test_no_new_calls_while_draining(rig: Rig) -> None:
    rig.accepting[0] = False
    sink = RecordingSink()
    await rig.runner.run(request(), sink, streaming=False)
    ((_, (code, message)),) = sink.endings()
    assert code == ErrorCode.OVER_CAPACITY and "shutting down" in message


async def test_inflight_gauge_returns_to_zero(rig: Rig) -> None:
    for i in range(3):
        await rig.runner.run(request(request_id=i), RecordingSink(), streaming=False)
    values = [point.value for _, point in metric_points(rig.reader, "exai.gateway.inflight")]
    assert values == [0]
    durations = list(metric_points(rig.reader, "exai.gateway.call.duration"))
    assert durations and durations[0][0] == {
        "exai.tool": "status",
        "exai.protocol": "native",
        "exai.outcome": "ok",
    }
