"""The tools through the real gateway, proxy, simulator and storage adapter."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from tests.integration.ws_gateway.stack import Stack, final, native, running_stack
from tests.support.servers import free_port
from tests.support.telemetry import CapturedTelemetry, metric_points

pytestmark = pytest.mark.integration


async def test_chat_answers_with_outputs_correlation_and_trace_ids(stack: Stack) -> None:
    async with native(stack.gateway) as client:
        frames = await client.run("chat", {"prompt": "What is the capital of France?"})
    assert [f["op"] for f in frames[:-1]] == ["progress"] * (len(frames) - 1)
    result = final(frames)
    assert result["op"] == "call_tool_res"
    (output,) = result["outputs"]
    assert output["type"] == "text" and "capital of France" in output["text"]
    assert result["metadata"]["model"] == "kimi-k2-0905-preview"
    assert result["metadata"]["usage"]["prompt_tokens"] > 0
    uuid.UUID(result["correlation_id"])  # generated: a UUID4
    (span,) = [s for s in stack.captured.spans() if s.name == "ws call_tool chat"]
    assert span.kind is SpanKind.SERVER
    assert result["trace_id"] == format(span.context.trace_id, "032x")


async def test_chat_streaming_sends_chunks_then_stream_complete_then_the_result(
    stack: Stack,
) -> None:
    async with native(stack.gateway) as client:
        frames = await client.run(
            "chat", {"prompt": "Tell me about streams", "model": "glm-4.5"}, stream=True
        )
    ops = [f["op"] for f in frames]
    chunks = [f["chunk"] for f in frames if f["op"] == "stream_chunk"]
    assert len(chunks) > 1
    assert ops[-2:] == ["stream_complete", "call_tool_res"]
    assert ops.index("stream_complete") > max(i for i, op in enumerate(ops) if op == "stream_chunk")
    assert "".join(chunks) == frames[-1]["outputs"][0]["text"]
    assert frames[-1]["metadata"]["model"] == "glm-4.5"


async def test_stream_as_a_tool_argument_also_streams(stack: Stack) -> None:
    async with native(stack.gateway) as client:
        frames = await client.run("chat", {"prompt": "hi there", "stream": True})
    assert any(f["op"] == "stream_chunk" for f in frames)


async def test_chat_memory_across_two_calls(stack: Stack) -> None:
    cid = f"conv-{uuid.uuid4().hex[:8]}"
    async with native(stack.gateway) as client:
        first = final(
            await client.run("chat", {"prompt": "My name is Ada.", "continuation_id": cid}, "1")
        )
        second = final(
            await client.run("chat", {"prompt": "What is my name?", "continuation_id": cid}, "2")
        )
        control = final(await client.run("chat", {"prompt": "What is my name?"}, "3"))
    assert first["metadata"]["memory"] == {
        "read": "new",
        "history_messages": 0,
        "history_messages_dropped": 0,
        "write": "stored",
    }
    assert second["metadata"]["memory"] == {
        "read": "loaded",
        "history_messages": 2,
        "history_messages_dropped": 0,
        "write": "stored",
    }
    # The second call sent the first exchange along: more prompt tokens than the same
    # question alone.
    with_history = second["metadata"]["usage"]["prompt_tokens"]
    alone = control["metadata"]["usage"]["prompt_tokens"]
    assert with_history > alone + 5
    history = await stack.history(cid)
    assert [(m["role"], m["content"]) for m in history] == [
        ("user", "My name is Ada."),
        ("assistant", first["outputs"][0]["text"]),
        ("user", "What is my name?"),
        ("assistant", second["outputs"][0]["text"]),
    ]


async def test_the_same_prompt_again_with_the_same_request_id_is_stored_again(
    stack: Stack,
) -> None:
    # A request_id may be reused once its call ended, and the session_id is the
    # client's choice: two calls with the same ids and prompt are two exchanges.
    cid = f"conv-{uuid.uuid4().hex[:8]}"
    arguments = {"prompt": "Say it again.", "continuation_id": cid}
    async with native(stack.gateway, session_id="same-session") as client:
        for _ in range(2):
            result = final(await client.run("chat", arguments, "same-id"))
            assert result["metadata"]["memory"]["write"] == "stored"
    history = await stack.history(cid)
    assert [(m["role"], m["content"]) for m in history][::2] == [("user", "Say it again.")] * 2
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]


async def test_chat_degrades_without_storage(captured: CapturedTelemetry, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with running_stack(captured, tmp_path, EXAI_STORAGE_URL=dead) as stack:
        async with native(stack.gateway) as client:
            result = final(await client.run("chat", {"prompt": "hello", "continuation_id": "c-1"}))
    assert result["op"] == "call_tool_res"
    assert result["outputs"][0]["text"]
    assert result["metadata"]["memory"] == {
        "read": "unavailable",
        "history_messages": 0,
        "history_messages_dropped": 0,
        "write": "failed",
    }


async def test_provider_failure_is_provider_error(stack: Stack) -> None:
    await stack.simulator("POST", "/admin/faults", {"mode": "error_500", "rate": 1.0})
    async with native(stack.gateway) as client:
        result = final(await client.run("chat", {"prompt": "hello"}))
    assert result["op"] == "error"
    assert result["error"]["code"] == "PROVIDER_ERROR"
    assert result["correlation_id"] and len(result["trace_id"]) == 32


async def test_consensus_side_by_side(stack: Stack) -> None:
    async with native(stack.gateway) as client:
        result = final(await client.run("consensus", {"prompt": "Tabs or spaces?"}))
    assert result["op"] == "call_tool_res"
    texts = [o["text"] for o in result["outputs"]]
    assert len(texts) == 2
    assert texts[0].startswith("## kimi-") and texts[1].startswith("## glm-")
    assert all(m["ok"] for m in result["metadata"]["models"].values())
    # The two models ran in parallel under the one call span.
    (call,) = [s for s in stack.captured.spans() if s.name == "ws call_tool consensus"]
    posts = [
        s
        for s in stack.captured.spans_of("ws-gateway")
        if s.kind is SpanKind.CLIENT and s.parent and s.parent.span_id == call.context.span_id
    ]
    assert len(posts) == 2


async def test_consensus_partial_failure_shows_the_error_for_that_model(stack: Stack) -> None:
    models = ["kimi-k2-0905-preview", "no-such-model"]
    async with native(stack.gateway) as client:
        result = final(await client.run("consensus", {"prompt": "q", "models": models}))
    assert result["op"] == "call_tool_res"
    ok, failed = result["outputs"]
    assert ok["text"].startswith("## kimi-k2-0905-preview")
    assert failed["text"].startswith("## no-such-model\n\nerror: ")
    assert result["metadata"]["models"]["no-such-model"]["ok"] is False


async def test_consensus_all_failing_is_provider_error(stack: Stack) -> None:
    await stack.simulator("POST", "/admin/faults", {"mode": "error_500", "rate": 1.0})
    async with native(stack.gateway) as client:
        result = final(await client.run("consensus", {"prompt": "q"}))
    assert result["op"] == "error" and result["error"]["code"] == "PROVIDER_ERROR"
    assert "kimi-" in result["error"]["message"] and "glm-" in result["error"]["message"]


async def test_consensus_of_unknown_models_only_is_a_validation_error(stack: Stack) -> None:
    async with native(stack.gateway) as client:
        result = final(
            await client.run("consensus", {"prompt": "q", "models": ["nope-1", "nope-2"]})
        )
    assert result["op"] == "error" and result["error"]["code"] == "VALIDATION_ERROR"
    assert "nope-1" in result["error"]["message"] and "nope-2" in result["error"]["message"]


async def test_listmodels(stack: Stack) -> None:
    async with native(stack.gateway) as client:
        result = final(await client.run("listmodels"))
    assert "kimi-k2-0905-preview" in result["metadata"]["models"]
    assert "glm-4.5" in result["outputs"][0]["text"]


async def test_status(stack: Stack) -> None:
    async with native(stack.gateway, session_id="status-session") as client:
        result = final(await client.run("status"))
    report = json.loads(result["outputs"][0]["text"])
    assert report["status"] == "healthy"
    assert report["dependencies"]["provider-proxy"]["status"] == "up"
    assert report["dependencies"]["storage-adapter"]["status"] == "up"
    assert report["inflight"] == {"global": 1, "global_max": 64, "session": 1, "session_max": 8}
    assert report["connections"]["open"] == 1
    assert report["version"]


async def test_validation_error_names_the_field(stack: Stack) -> None:
    async with native(stack.gateway) as client:
        result = final(await client.run("chat", {"prompt": "x", "temperature": 7}))
    assert result["error"]["code"] == "VALIDATION_ERROR"
    assert "temperature" in result["error"]["message"]


async def test_an_unknown_model_is_a_validation_error_with_the_proxys_message(
    stack: Stack,
) -> None:
    async with native(stack.gateway) as client:
        result = final(await client.run("chat", {"prompt": "x", "model": "no-such-model"}))
    assert result["op"] == "error" and result["error"]["code"] == "VALIDATION_ERROR"
    assert "'no-such-model' is not served by this proxy" in result["error"]["message"]


def outcomes_of(stack: Stack, metric: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for attributes, point in metric_points(stack.reader, metric):
        value = point.count if metric.endswith("duration") else point.value
        if value:  # not the series created at 0 at start-up
            counts[attributes["exai.outcome"]] = counts.get(attributes["exai.outcome"], 0) + value
    return counts


async def test_client_mistakes_are_client_errors_not_service_errors(stack: Stack) -> None:
    async with native(stack.gateway) as client:
        invalid = final(await client.run("chat", {"prompt": "x", "temperature": 7}, "v"))
        unknown = final(await client.run("chat", {"prompt": "x", "model": "no-such-model"}, "m"))
        await stack.simulator("POST", "/admin/faults", {"mode": "error_500", "rate": 1.0})
        broken = final(await client.run("chat", {"prompt": "x"}, "b"))
    assert [invalid["error"]["code"], unknown["error"]["code"], broken["error"]["code"]] == [
        "VALIDATION_ERROR",
        "VALIDATION_ERROR",
        "PROVIDER_ERROR",
    ]
    expected = {"client_error": 2, "error": 1}
    assert outcomes_of(stack, "exai.gateway.calls") == expected
    assert outcomes_of(stack, "exai.gateway.call.duration") == expected
    spans = {
        s.attributes["exai.request_id"]: s
        for s in stack.captured.spans_of("ws-gateway")
        if s.name == "ws call_tool chat" and s.attributes
    }
    for request_id in ("v", "m"):
        attributes = spans[request_id].attributes or {}
        assert attributes["exai.outcome"] == "client_error"
        assert attributes["error.type"] == "VALIDATION_ERROR"
        assert spans[request_id].status.status_code is StatusCode.UNSET
    assert (spans["b"].attributes or {})["exai.outcome"] == "error"
    assert spans["b"].status.status_code is StatusCode.ERROR


# --- correlation IDs ------------------------------------------------------------------


async def test_correlation_id_from_the_call_is_echoed_and_on_every_span(stack: Stack) -> None:
    async with native(stack.gateway) as client:
        result = final(
            await client.run(
                "chat", {"prompt": "hi", "continuation_id": "corr-conv"}, correlation_id="my-corr-1"
            )
        )
    assert result["correlation_id"] == "my-corr-1"
    trace_spans = [
        s
        for s in stack.captured.spans()
        if format(s.context.trace_id, "032x") == result["trace_id"]
    ]
    services = {s.resource.attributes["service.name"] for s in trace_spans}
    assert services == {"ws-gateway", "provider-proxy", "llm-simulator", "storage-adapter"}
    assert all(
        s.attributes and s.attributes.get("exai.correlation_id") == "my-corr-1" for s in trace_spans
    )


async def test_correlation_id_from_hello_then_header_then_generated(stack: Stack) -> None:
    async with native(stack.gateway, correlation_id="from-hello") as client:
        assert final(await client.run("status"))["correlation_id"] == "from-hello"
    headers = {"X-Correlation-ID": "from-header"}
    async with native(stack.gateway, headers=headers) as client:
        assert final(await client.run("status"))["correlation_id"] == "from-header"
        override = final(await client.run("status", request_id="2", correlation_id="per-call"))
        assert override["correlation_id"] == "per-call"
    async with native(stack.gateway) as client:
        first = final(await client.run("status", request_id="a"))["correlation_id"]
        second = final(await client.run("status", request_id="b", correlation_id="bad id!"))
        assert uuid.UUID(first).version == 4
        assert (
            uuid.UUID(second["correlation_id"]).version == 4 and second["correlation_id"] != first
        )
