"""Content capture (`EXAI_CAPTURE_CONTENT=true`): GenAI semconv message shapes, and the
`chat` span that carries them only when capture is on."""

from __future__ import annotations

import json

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from provider_proxy.adapters import build_adapters
from provider_proxy.completions import ResponseMeta
from provider_proxy.content import StreamOutput, completion_output, input_messages
from provider_proxy.settings import ProxySettings
from provider_proxy.telemetry import REQUEST_MODEL_RAW, ChatCall, ProxyMetrics
from provider_proxy.types import JsonObject

INPUT = "gen_ai.input.messages"
OUTPUT = "gen_ai.output.messages"


def test_input_messages_in_the_semconv_shape() -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is on this picture?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
            "name": "ada",
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q": "cat"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
    ]
    assert json.loads(input_messages(messages)) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "What is on this picture?"},
                # The type only: an image's payload is never recorded.
                {"type": "image_url"},
            ],
            "name": "ada",
        },
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "call_1", "name": "lookup", "arguments": {"q": "cat"}}
            ],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "call_1", "response": "a cat"}],
        },
    ]
    assert "AAAA" not in input_messages(messages)


def test_output_messages_of_a_completion() -> None:
    body = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Paris."},
                "finish_reason": "stop",
            },
            {"index": 1, "message": {"content": "Lyon"}, "finish_reason": "length"},
        ]
    }
    assert json.loads(completion_output(body)) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Paris."}],
            "finish_reason": "stop",
        },
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Lyon"}],
            "finish_reason": "length",
        },
    ]


def test_streamed_deltas_become_whole_output_messages() -> None:
    output = StreamOutput()
    chunks: list[JsonObject] = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {"content": "Par"}}]},
        {"choices": [{"index": 0, "delta": {"content": "is."}}]},
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_9",
                                "function": {"name": "geo", "arguments": '{"c":'},
                            }
                        ]
                    },
                }
            ]
        },
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"FR"}'}}]},
                }
            ]
        },
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": []},  # a usage-only chunk
    ]
    for chunk in chunks:
        output.absorb(chunk)
    assert json.loads(output.as_json()) == [
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "Paris."},
                {"type": "tool_call", "id": "call_9", "name": "geo", "arguments": {"c": "FR"}},
            ],
            "finish_reason": "tool_calls",
        }
    ]


BODY: JsonObject = {
    "model": "kimi-made-up-123",
    "messages": [{"role": "user", "content": "Hi there"}],
}


def _finished_call(capture: bool, *, stream: bool) -> dict[str, object]:
    """The attributes of a `chat` span recorded *without* the redacting exporter."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    metrics = ProxyMetrics(MeterProvider().get_meter("test"), dict)
    adapter = build_adapters(ProxySettings())["kimi"]
    call = ChatCall(
        tracer_provider.get_tracer("test"),
        metrics,
        adapter,
        "kimi-made-up-123",
        "other",
        "closed",
        BODY,
        capture_content=capture,
    )
    if stream:
        call.observe_chunk(
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]}
        )
        call.observe_chunk(
            {"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]}
        )
    else:
        call.observe_completion(
            {
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Hello"},
                        "finish_reason": "stop",
                    }
                ]
            }
        )
    call.succeed(ResponseMeta(finish_reasons=["stop"]), None)
    (span,) = exporter.get_finished_spans()
    assert span.name == "chat other"
    return dict(span.attributes or {})


@pytest.mark.parametrize("stream", [False, True])
def test_content_is_on_the_chat_span_only_with_capture_on(stream: bool) -> None:
    attributes = _finished_call(True, stream=stream)
    assert json.loads(str(attributes[INPUT])) == [
        {"role": "user", "parts": [{"type": "text", "content": "Hi there"}]}
    ]
    assert json.loads(str(attributes[OUTPUT])) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Hello"}],
            "finish_reason": "stop",
        }
    ]

    attributes = _finished_call(False, stream=stream)
    assert INPUT not in attributes and OUTPUT not in attributes
    assert not any("Hi there" in str(v) or "Hello" in str(v) for v in attributes.values())


def test_the_chat_span_names_the_model_label_not_the_requested_name() -> None:
    attributes = _finished_call(False, stream=False)
    assert attributes["gen_ai.request.model"] == "other"
    assert attributes[REQUEST_MODEL_RAW] == "kimi-made-up-123"
