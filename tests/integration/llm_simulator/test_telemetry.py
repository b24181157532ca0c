"""The simulator is traced like every service: the caller's trace continues into it."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from tests.integration.llm_simulator.conftest import (
    API_KEY,
    MODEL,
    Simulator,
    chat_body,
    eventually,
)
from tests.support.telemetry import CapturedTelemetry

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
PROMPT = "a prompt that must never reach a span"


def named(captured: CapturedTelemetry, name: str) -> list[ReadableSpan]:
    return [s for s in captured.spans_of("llm-simulator") if s.name == name]


async def server_span(captured: CapturedTelemetry, name: str, count: int = 1) -> ReadableSpan:
    """The last of `count` ended spans called `name` (spans end just after the response)."""

    async def ended() -> bool:
        return len(named(captured, name)) >= count

    await eventually(ended)
    spans = named(captured, name)
    assert len(spans) == count
    return spans[-1]


@pytest.mark.parametrize("stream", [False, True])
async def test_server_span_continues_the_callers_trace(
    client: httpx.AsyncClient, sim: Simulator, captured: CapturedTelemetry, stream: bool
) -> None:
    response = await client.post(
        sim.chat_url("kimi"),
        json=chat_body("kimi", PROMPT, stream=stream),
        headers={
            "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
            "X-Correlation-ID": "corr-sim-1",
        },
    )
    assert response.status_code == 200
    assert response.headers["X-Correlation-ID"] == "corr-sim-1"
    assert response.headers["traceparent"].startswith(f"00-{TRACE_ID}-")

    span = await server_span(captured, "POST /v1/chat/completions")
    assert span.kind is SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT_ID
    attributes = dict(span.attributes or {})
    assert attributes["exai.correlation_id"] == "corr-sim-1"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "kimi"
    assert attributes["gen_ai.request.model"] == MODEL["kimi"]
    assert attributes["gen_ai.response.model"] == MODEL["kimi"]
    assert list(attributes["gen_ai.response.finish_reasons"]) == ["stop"]  # type: ignore[arg-type]
    assert int(str(attributes["gen_ai.usage.input_tokens"])) > 0
    assert int(str(attributes["gen_ai.usage.output_tokens"])) > 0
    assert attributes["exai.usage.cached_tokens"] == 0
    assert attributes["http.response.status_code"] == 200


async def test_no_key_or_prompt_in_any_span(
    client: httpx.AsyncClient, sim: Simulator, captured: CapturedTelemetry
) -> None:
    await client.post(sim.chat_url("glm"), json=chat_body("glm", PROMPT))
    await client.post(sim.chat_url("glm"), json=chat_body("glm", PROMPT, stream=True))
    await server_span(captured, "POST /api/paas/v4/chat/completions", count=2)
    spans = captured.spans_of("llm-simulator")
    assert spans
    for span in spans:
        texts = [str(v) for v in (span.attributes or {}).values()]
        texts += [str(v) for e in span.events for v in (e.attributes or {}).values()]
        for text in texts:
            assert API_KEY not in text
            assert "never reach" not in text


async def test_fault_is_visible_on_the_span(
    client: httpx.AsyncClient, sim: Simulator, captured: CapturedTelemetry
) -> None:
    response = await client.post(
        sim.chat_url("glm"), json=chat_body("glm"), headers={"X-Simulator-Fault": "error_500"}
    )
    assert response.status_code == 500
    span = await server_span(captured, "POST /api/paas/v4/chat/completions")
    assert (span.attributes or {})["exai.simulator.fault"] == "error_500"
    assert span.status.status_code is StatusCode.ERROR


async def test_health_probes_are_not_traced(
    client: httpx.AsyncClient, captured: CapturedTelemetry
) -> None:
    await client.get("/health")
    await client.get("/admin/stats")
    await server_span(captured, "GET /admin/stats")
    assert not [s for s in captured.spans_of("llm-simulator") if "health" in s.name]


@pytest.mark.parametrize("provider", ["kimi", "glm"])
async def test_made_up_models_share_one_bounded_model_label(
    client: httpx.AsyncClient, sim: Simulator, captured: CapturedTelemetry, provider: str
) -> None:
    """`gen_ai.request.model` is a span-metrics dimension: a name the simulator does not
    serve must not become a Prometheus series of its own."""
    name = {"kimi": "POST /v1/chat/completions", "glm": "POST /api/paas/v4/chat/completions"}
    for model in (f"{provider}-made-up-123", f"{provider}-made-up-456"):
        response = await client.post(
            sim.chat_url(provider), json={**chat_body(provider), "model": model}
        )
        assert response.status_code in (400, 404)
    await server_span(captured, name[provider], count=2)
    for span in named(captured, name[provider]):
        attributes = dict(span.attributes or {})
        assert attributes["gen_ai.request.model"] == "other"
        assert attributes["gen_ai.provider.name"] == provider
        assert "made-up" not in span.name
        assert not any("made-up" in str(v) for v in attributes.values())
