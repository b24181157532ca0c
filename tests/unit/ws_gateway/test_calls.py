"""CallRunner + telemetry: every way a call ends is one ending, one span, one metric point."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
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

    def abandoned(self, call: CallRequest) -> None:
        self.events.append(("abandoned", None))

    def endings(self) -> list[tuple[str, Any]]:
        return [e for e in self.events if e[0] in ("ok", "failed", "cancelled", "abandoned")]


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
        if point.value:  # not the series created at 0 at start-up
            counts[attrs["exai.outcome"]] = counts.get(attrs["exai.outcome"], 0) + point.value
    return counts


def duration_outcomes(reader: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for attrs, point in metric_points(reader, "exai.gateway.call.duration"):
        counts[attrs["exai.outcome"]] = counts.get(attrs["exai.outcome"], 0) + point.count
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


async def test_validation_error_is_a_client_error(rig: Rig, captured: CapturedTelemetry) -> None:
    sink = RecordingSink()
    await rig.runner.run(request("chat", temperature=9), sink, streaming=False)
    ((kind, (code, message)),) = sink.endings()
    assert kind == "failed"
    assert code == ErrorCode.VALIDATION_ERROR and "prompt" in message and "temperature" in message
    # The client's mistake: not an error of the service (SLO), not an error span.
    assert outcomes(rig.reader) == {"client_error": 1}
    assert duration_outcomes(rig.reader) == {"client_error": 1}
    (span,) = captured.spans()
    assert span.attributes is not None
    assert span.attributes["exai.outcome"] == "client_error"
    assert span.attributes["error.type"] == "VALIDATION_ERROR"
    assert span.status.status_code is StatusCode.UNSET


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


# --- cancelled before the call's task ever ran ----------------------------------------


def inflight_sum(reader: Any) -> int:
    return sum(int(p.value) for _, p in metric_points(reader, "exai.gateway.inflight"))


async def test_a_call_cancelled_before_its_task_ran_still_ends_once(
    rig: Rig, captured: CapturedTelemetry
) -> None:
    sink = RecordingSink()
    running = rig.runner.start(request(), sink, streaming=False)
    running.cancel()  # its task has not taken a single step yet
    running.cancel()  # a second cancel changes nothing
    with pytest.raises(asyncio.CancelledError):
        await running.task
    assert sink.endings() == [("cancelled", None)]
    assert rig.limiter.global_inflight == 0 and rig.limiter.sessions_with_calls == 0
    (span,) = captured.spans()
    assert span.attributes is not None and span.attributes["exai.outcome"] == "cancelled"
    assert outcomes(rig.reader) == {"cancelled": 1}
    assert inflight_sum(rig.reader) == 0
    running.cancel()  # and cancelling a call that ended is a no-op
    await asyncio.sleep(0)
    assert len(sink.endings()) == 1


async def test_a_task_cancelled_behind_the_runners_back_before_it_ran_still_ends_once(
    rig: Rig, captured: CapturedTelemetry
) -> None:
    sink = RecordingSink()
    running = rig.runner.start(request(), sink, streaming=False)
    running.task.cancel()  # e.g. the event loop tearing down: the coroutine never starts
    with pytest.raises(asyncio.CancelledError):
        await running.task
    await asyncio.sleep(0)  # done-callbacks run on the next loop iteration
    assert sink.endings() == [("abandoned", None)]
    (span,) = captured.spans()
    assert span.attributes is not None and span.attributes["exai.outcome"] == "cancelled"
    assert outcomes(rig.reader) == {"cancelled": 1}
    assert rig.limiter.global_inflight == 0


async def test_a_started_call_is_cancelled_where_it_waits(rig: Rig) -> None:
    started = asyncio.Event()

    async def hang(session_id: str) -> dict[str, Any]:
        started.set()
        await asyncio.sleep(5)
        return {}

    rig.status["fn"] = hang
    sink = RecordingSink()
    running = rig.runner.start(request(), sink, streaming=False)
    await started.wait()
    assert rig.limiter.global_inflight == 1
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running.task
    assert sink.endings() == [("cancelled", None)]
    assert rig.limiter.global_inflight == 0
    assert outcomes(rig.reader) == {"cancelled": 1}


async def test_calls_that_end_normally_through_start(rig: Rig) -> None:
    sinks = [RecordingSink() for _ in range(2)]
    calls = [
        rig.runner.start(request(request_id=i), s, streaming=False) for i, s in enumerate(sinks)
    ]
    await asyncio.gather(*(c.task for c in calls))
    assert [s.endings()[0][0] for s in sinks] == ["ok", "ok"]
    assert outcomes(rig.reader) == {"ok": 2}


# --- outcome classes: client mistakes are not service errors --------------------------


def proxy_runner(
    captured: CapturedTelemetry, handler: Callable[[httpx.Request], httpx.Response]
) -> tuple[CallRunner, Any, httpx.AsyncClient]:
    settings = GatewaySettings.model_validate({"EXAI_WS_TOKEN": "t" * 20})
    telemetry, reader = captured.build("ws-gateway", settings)
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://proxy")

    async def no_status(session_id: str) -> dict[str, Any]:
        return {}

    toolbox = Toolbox(settings, ProviderClient(http), StorageClient(http), no_status)
    runner = CallRunner(
        toolbox,
        InflightLimiter(per_session=2, global_max=3),
        GatewayTelemetry(telemetry),
        call_timeout_s=5,
        accepting=lambda: True,
    )
    return runner, reader, http


def proxy_answers(models: dict[str, tuple[int, dict[str, Any]]]) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        model = json.loads(request.content)["model"]
        status, body = models[model]
        return httpx.Response(status, json=body)

    return handler


UNKNOWN_MODEL = (
    400,
    {
        "error": {
            "message": "model 'nope' is not served by this proxy (see GET /v1/models)",
            "type": "invalid_request_error",
            "code": "model_not_found",
            "param": None,
        }
    },
)
BAD_GATEWAY = (502, {"error": {"message": "upstream answered HTTP 500", "code": "server_error"}})
ANSWER = (
    200,
    {"model": "good", "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]},
)


async def test_a_proxy_4xx_is_a_validation_error_and_a_client_error(
    captured: CapturedTelemetry,
) -> None:
    runner, reader, http = proxy_runner(captured, proxy_answers({"nope": UNKNOWN_MODEL}))
    sink = RecordingSink()
    await runner.run(request("chat", prompt="hi", model="nope"), sink, streaming=False)
    await http.aclose()
    ((kind, (code, message)),) = sink.endings()
    assert (kind, code) == ("failed", ErrorCode.VALIDATION_ERROR)
    assert "model 'nope' is not served by this proxy" in message
    assert outcomes(reader) == {"client_error": 1}
    assert duration_outcomes(reader) == {"client_error": 1}
    span = next(s for s in captured.spans() if s.name == "ws call_tool chat")
    assert span.attributes is not None and span.attributes["error.type"] == "VALIDATION_ERROR"
    assert span.status.status_code is StatusCode.UNSET


async def test_a_proxy_5xx_stays_a_provider_error_and_an_error(captured: CapturedTelemetry) -> None:
    runner, reader, http = proxy_runner(captured, proxy_answers({"m": BAD_GATEWAY}))
    sink = RecordingSink()
    await runner.run(request("chat", prompt="hi", model="m"), sink, streaming=False)
    await http.aclose()
    ((kind, (code, _)),) = sink.endings()
    assert (kind, code) == ("failed", ErrorCode.PROVIDER_ERROR)
    assert outcomes(reader) == {"error": 1}
    span = next(s for s in captured.spans() if s.name == "ws call_tool chat")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"] == "PROVIDER_ERROR"


@pytest.mark.parametrize(
    ("answers", "code", "outcome"),
    [
        (
            {"nope": UNKNOWN_MODEL, "nope2": UNKNOWN_MODEL},
            ErrorCode.VALIDATION_ERROR,
            "client_error",
        ),
        ({"nope": UNKNOWN_MODEL, "down": BAD_GATEWAY}, ErrorCode.PROVIDER_ERROR, "error"),
    ],
)
async def test_consensus_where_every_model_fails(
    captured: CapturedTelemetry, answers: dict[str, Any], code: ErrorCode, outcome: str
) -> None:
    runner, reader, http = proxy_runner(captured, proxy_answers(answers))
    sink = RecordingSink()
    await runner.run(request("consensus", prompt="q", models=list(answers)), sink, streaming=False)
    await http.aclose()
    ((kind, (got, message)),) = sink.endings()
    assert (kind, got) == ("failed", code)
    assert all(model in message for model in answers)
    assert outcomes(reader) == {outcome: 1}


async def test_consensus_with_one_unknown_model_still_answers(captured: CapturedTelemetry) -> None:
    runner, reader, http = proxy_runner(
        captured, proxy_answers({"good": ANSWER, "nope": UNKNOWN_MODEL})
    )
    sink = RecordingSink()
    await runner.run(
        request("consensus", prompt="q", models=["good", "nope"]), sink, streaming=False
    )
    await http.aclose()
    ((kind, _),) = sink.endings()
    assert kind == "ok"
    assert outcomes(reader) == {"ok": 1}


def mcp_request(tool: str = "status", request_id: Any = 7) -> CallRequest:
    return CallRequest(
        "mcp", "0123abcd" * 4, request_id, tool, {}, "corr-1", False, "/mcp", "2025-06-18"
    )


MCP_OPERATION = "mcp.server.operation.duration"


async def test_native_span_keeps_its_name_and_carries_the_genai_tool_attributes(
    rig: Rig, captured: CapturedTelemetry
) -> None:
    await rig.runner.run(request(), RecordingSink(), streaming=False)
    (span,) = captured.spans()
    assert span.name == "ws call_tool status"
    assert span.attributes is not None
    assert span.attributes["gen_ai.tool.name"] == "status"
    assert span.attributes["gen_ai.operation.name"] == "execute_tool"
    assert not any(key.startswith(("mcp.", "jsonrpc.")) for key in span.attributes)
    # The MCP operation metric is for MCP requests only.
    assert list(metric_points(rig.reader, MCP_OPERATION)) == []


async def test_mcp_call_span_and_operation_metric_follow_the_mcp_conventions(
    rig: Rig, captured: CapturedTelemetry
) -> None:
    await rig.runner.run(mcp_request(), RecordingSink(), streaming=False)
    (span,) = captured.spans()
    assert span.name == "tools/call status" and span.kind is SpanKind.SERVER
    assert span.attributes is not None
    bounded = {
        "mcp.method.name": "tools/call",
        "gen_ai.tool.name": "status",
        "gen_ai.operation.name": "execute_tool",
        "mcp.protocol.version": "2025-06-18",
        "network.transport": "tcp",
        "network.protocol.name": "websocket",
    }
    assert dict(span.attributes).items() >= bounded.items()
    assert span.attributes["mcp.session.id"] == "0123abcd" * 4
    assert span.attributes["jsonrpc.request.id"] == "7"
    assert "error.type" not in span.attributes
    ((attributes, point),) = list(metric_points(rig.reader, MCP_OPERATION))
    # No session or request ID on the metric: bounded values only.
    assert attributes == bounded
    assert point.count == 1
    assert point.sum == pytest.approx(
        ((span.end_time or 0) - (span.start_time or 0)) / 1e9, abs=0.05
    )


async def test_a_failed_mcp_call_is_a_tool_error_with_our_code_alongside(
    rig: Rig, captured: CapturedTelemetry
) -> None:
    async def slow(session_id: str) -> dict[str, Any]:
        await asyncio.sleep(5)
        return {}

    rig.status["fn"] = slow
    sink = RecordingSink()
    await rig.runner.run(mcp_request(request_id="late"), sink, streaming=False)
    assert sink.endings()[0][1][0] is ErrorCode.TIMEOUT
    (span,) = captured.spans()
    assert span.attributes is not None
    assert span.attributes["error.type"] == "tool_error"
    assert span.attributes["exai.error.code"] == "TIMEOUT"
    assert span.attributes["jsonrpc.request.id"] == "late"
    assert span.status.status_code is StatusCode.ERROR
    ((attributes, point),) = list(metric_points(rig.reader, MCP_OPERATION))
    assert attributes["error.type"] == "tool_error" and point.count == 1
    assert "mcp.session.id" not in attributes and "jsonrpc.request.id" not in attributes


async def test_mcp_session_duration_records_version_and_how_the_session_ended(
    captured: CapturedTelemetry,
) -> None:
    telemetry, reader = captured.build("ws-gateway")
    gateway_telemetry = GatewayTelemetry(telemetry)
    transport = {"network.transport": "tcp", "network.protocol.name": "websocket"}

    with gateway_telemetry.mcp_session(lambda: "2025-11-25") as session:
        session.closed_with(1000)
    with gateway_telemetry.mcp_session(lambda: None) as session:
        session.closed_with(1011)
    with pytest.raises(RuntimeError), gateway_telemetry.mcp_session(lambda: "2025-11-25"):
        raise RuntimeError("boom")
    recorded = sorted(
        (sorted(a.items()), p.count)
        for a, p in metric_points(reader, "mcp.server.session.duration")
    )
    assert recorded == sorted(
        [
            (sorted({**transport, "mcp.protocol.version": "2025-11-25"}.items()), 1),
            (sorted({**transport, "error.type": "1011"}.items()), 1),
            (
                sorted(
                    {
                        **transport,
                        "mcp.protocol.version": "2025-11-25",
                        "error.type": "RuntimeError",
                    }.items()
                ),
                1,
            ),
        ]
    )
