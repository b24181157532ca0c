"""What the proxy's telemetry and upstream requests must not carry: client-made label
values, prompt text (unless capture is on), and our trace context sent to third parties."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from llm_simulator.app import create_app as create_simulator
from llm_simulator.settings import SimulatorSettings
from provider_proxy.app import create_app
from provider_proxy.settings import ProxySettings
from provider_proxy.telemetry import REQUEST_MODEL_RAW
from tests.config_tools import load_yaml
from tests.integration.provider_proxy.conftest import (
    API_KEY,
    FAST,
    MODEL,
    PROXY,
    SIMULATOR,
    TIME_SCALE,
    Stack,
    chat_body,
    eventually,
    running_stack,
)
from tests.support.asgi import serve_app
from tests.support.internal_auth import (
    PROVIDER_TOKEN,
    SIMULATOR_ADMIN_TOKEN,
    SimulatorAdminAuth,
    bearer,
)
from tests.support.sse import chunks, streamed_text
from tests.support.telemetry import CapturedTelemetry, metric_points

pytestmark = pytest.mark.integration

MADE_UP = "kimi-made-up-123"
# The attributes the collector's span-metrics connector turns into Prometheus labels
# (the span name is one too).
SPAN_METRIC_DIMENSIONS = [
    d["name"] for d in load_yaml("otel-collector.yaml")["connectors"]["span_metrics"]["dimensions"]
]
TRACE_CONTEXT = {"traceparent", "tracestate", "baggage"}
INPUT = "gen_ai.input.messages"
OUTPUT = "gen_ai.output.messages"


def lines(response: httpx.Response) -> list[str]:
    return [line for line in response.text.splitlines() if line.startswith("data: ")]


def spans_named(captured: CapturedTelemetry, service: str, name: str) -> list[ReadableSpan]:
    return [s for s in captured.spans_of(service) if s.name == name]


# --- bounded span-metric dimensions --------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_made_up_model_names_never_become_span_names_or_model_labels(
    captured: CapturedTelemetry, stream: bool
) -> None:
    async with running_stack(captured) as stack:
        for suffix in ("", "-again"):
            response = await stack.chat("kimi", model=MADE_UP + suffix, stream=stream)
            assert response.status_code == 404  # the simulator does not serve it
        await stack.settled(2)
        await eventually(
            lambda: len(spans_named(captured, SIMULATOR, "POST /v1/chat/completions")) == 2
        )

        calls = [s for s in stack.proxy_spans() if s.kind is SpanKind.CLIENT and s.name != "POST"]
        assert [c.name for c in calls] == ["chat other", "chat other"]
        for call in calls:
            assert (call.attributes or {})["gen_ai.request.model"] == "other"
        # The name the client asked for stays on the span, outside every metric.
        assert sorted(str((c.attributes or {})[REQUEST_MODEL_RAW]) for c in calls) == [
            MADE_UP,
            MADE_UP + "-again",
        ]
        assert REQUEST_MODEL_RAW not in SPAN_METRIC_DIMENSIONS
        for sim in spans_named(captured, SIMULATOR, "POST /v1/chat/completions"):
            assert (sim.attributes or {})["gen_ai.request.model"] == "other"

        for span in captured.spans():
            assert "made-up" not in span.name
            attributes = span.attributes or {}
            for dimension in SPAN_METRIC_DIMENSIONS:
                assert "made-up" not in str(attributes.get(dimension, "")), (span.name, dimension)
        data = stack.reader.get_metrics_data()
        assert data is not None
        assert "made-up" not in data.to_json()


async def test_configured_models_keep_their_own_name(stack: Stack) -> None:
    assert (await stack.chat("glm")).status_code == 200
    await stack.settled(1)
    (call,) = stack.proxy_spans("chat glm-4.5")
    assert (call.attributes or {})["gen_ai.request.model"] == "glm-4.5"
    assert REQUEST_MODEL_RAW not in (call.attributes or {})
    requests = [a for a, p in metric_points(stack.reader, "exai.provider.requests") if p.value]
    assert [a["gen_ai.request.model"] for a in requests] == ["glm-4.5"]


# --- EXAI_CAPTURE_CONTENT ------------------------------------------------------------

EXPECTED_INPUT = [
    {"role": "system", "parts": [{"type": "text", "content": "You answer in one sentence."}]},
    {"role": "user", "parts": [{"type": "text", "content": "What is the capital of France?"}]},
]


async def _answer(stack: Stack, provider: str, stream: bool) -> str:
    body = chat_body(provider, stream=stream)
    async with stack.client() as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    if stream:
        return streamed_text(chunks([line.removeprefix("data: ") for line in lines(response)]))
    return str(response.json()["choices"][0]["message"]["content"])


@pytest.mark.parametrize("stream", [False, True])
async def test_capture_on_records_messages_on_the_chat_span(
    captured: CapturedTelemetry, stream: bool
) -> None:
    async with running_stack(captured, capture_content=True) as stack:
        text = await _answer(stack, "glm", stream)
        await stack.settled(1, name="chat glm-4.5")
        (call,) = stack.proxy_spans("chat glm-4.5")
    attributes = call.attributes or {}
    # Exported through the shared redacting exporter, which keeps content when opted in.
    assert json.loads(str(attributes[INPUT])) == EXPECTED_INPUT
    assert json.loads(str(attributes[OUTPUT])) == [
        {"role": "assistant", "parts": [{"type": "text", "content": text}], "finish_reason": "stop"}
    ]
    # Only the chat span carries content.
    others = [s for s in captured.spans() if s is not call]
    assert not any(INPUT in (s.attributes or {}) or OUTPUT in (s.attributes or {}) for s in others)


@pytest.mark.parametrize("stream", [False, True])
async def test_capture_off_records_no_messages(stack: Stack, stream: bool) -> None:
    text = await _answer(stack, "kimi", stream)
    await stack.settled(1, name=f"chat {MODEL['kimi']}")
    for span in stack.captured.spans():
        attributes = span.attributes or {}
        assert INPUT not in attributes and OUTPUT not in attributes
        assert not any(text in str(v) for v in attributes.values())
        assert not any("capital of France" in str(v) for v in attributes.values())


# --- trace context to upstreams ------------------------------------------------------


class Remote:
    """Runs an ASGI app in a fresh context, as a host across the network would: an
    in-process app would otherwise see the caller's span and baggage as its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def run() -> None:
            await self.app(scope, receive, send)

        await asyncio.create_task(run(), context=contextvars.Context())


@contextlib.asynccontextmanager
async def external_stack(captured: CapturedTelemetry) -> AsyncIterator[tuple[str, Any]]:
    """A proxy whose providers have API keys and the *real* base URLs; the requests are
    carried in-process to an llm-simulator app, so nothing leaves the machine."""
    sim_settings = SimulatorSettings(simulator_admin_token=SIMULATOR_ADMIN_TOKEN)
    sim_telemetry, _ = captured.build(SIMULATOR, sim_settings)
    simulator = create_simulator(sim_settings, sim_telemetry)
    settings = ProxySettings(
        **FAST,
        kimi_api_key=SecretStr(API_KEY),
        glm_api_key=SecretStr(API_KEY),
        provider_token=SecretStr(PROVIDER_TOKEN),
    )
    telemetry, _ = captured.build(PROXY, settings)
    app = create_app(
        settings, telemetry, upstream_transport=httpx.ASGITransport(app=Remote(simulator))
    )
    async with serve_app(app) as url:
        yield url, simulator


@pytest.mark.parametrize("provider", ["kimi", "glm"])
async def test_third_party_apis_get_no_trace_context_or_baggage(
    captured: CapturedTelemetry, provider: str
) -> None:
    host = {"kimi": "api.moonshot.ai", "glm": "open.bigmodel.cn"}[provider]
    async with external_stack(captured) as (url, simulator):
        async with httpx.AsyncClient(
            base_url=url, headers=bearer(PROVIDER_TOKEN), timeout=20 * TIME_SCALE
        ) as client:
            response = await client.post(
                "/v1/chat/completions",
                json=chat_body(provider),
                headers={"X-Correlation-ID": "corr-external-1"},
            )
        assert response.status_code == 200
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=simulator),
            base_url="http://simulator",
            auth=SimulatorAdminAuth(),
        ) as admin:
            seen = (await admin.get("/admin/last-request")).json()
        await eventually(
            lambda: len(spans_named(captured, PROXY, "POST /v1/chat/completions")) == 1
        )

    assert seen["provider"] == provider
    assert "authorization" in seen["header_names"]
    assert not TRACE_CONTEXT & set(seen["header_names"])

    # The client span is still recorded locally, in the caller's trace.
    proxy = captured.spans_of(PROXY)
    (server,) = spans_named(captured, PROXY, "POST /v1/chat/completions")
    (http,) = [s for s in proxy if s.kind is SpanKind.CLIENT and s.name == "POST"]
    assert http.context.trace_id == server.context.trace_id
    assert (http.attributes or {})["exai.correlation_id"] == "corr-external-1"
    assert (http.attributes or {})["server.address"] == host
    # The provider could not continue our trace, nor learn our correlation ID.
    for span in captured.spans_of(SIMULATOR):
        assert span.context.trace_id != server.context.trace_id
        assert (span.attributes or {}).get("exai.correlation_id") != "corr-external-1"


async def test_the_simulator_gets_trace_context_and_baggage(stack: Stack) -> None:
    """Keyed providers pointed at a simulator on loopback (like the end-to-end test):
    the simulator's spans belong in the caller's trace."""
    assert (await stack.chat("kimi")).status_code == 200
    async with httpx.AsyncClient(base_url=stack.sim_url, auth=SimulatorAdminAuth()) as admin:
        seen = (await admin.get("/admin/last-request")).json()
    assert {"traceparent", "baggage"} <= set(seen["header_names"])
