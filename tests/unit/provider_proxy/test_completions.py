"""Provider responses in, OpenAI responses and telemetry facts out."""

from __future__ import annotations

import json

import pytest

from provider_proxy.completions import StreamAccumulator, parse_chunk, parse_completion
from provider_proxy.errors import UpstreamMalformed, UpstreamServerError
from provider_proxy.usage import Usage


def test_kimi_completion_gets_openai_usage() -> None:
    raw = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "kimi-k2",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 2,
            "total_tokens": 11,
            "cached_tokens": 4,
        },
    }
    body, meta = parse_completion(json.dumps(raw).encode(), "kimi")
    assert body["usage"] == {
        "prompt_tokens": 9,
        "completion_tokens": 2,
        "total_tokens": 11,
        "prompt_tokens_details": {"cached_tokens": 4},
    }
    assert (meta.response_id, meta.response_model, meta.finish_reasons) == (
        "chatcmpl-1",
        "kimi-k2",
        ["stop"],
    )
    assert meta.usage == Usage(9, 2, 4)


def test_glm_completion_gains_the_object_field() -> None:
    raw = {
        "id": "2025",
        "request_id": "2025",
        "created": 1,
        "model": "glm-4.5",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "x"},
                "finish_reason": "length",
            }
        ],
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 2,
            "prompt_tokens_details": {"cached_tokens": 3},
        },
    }
    body, meta = parse_completion(json.dumps(raw).encode(), "glm")
    assert body["object"] == "chat.completion"
    assert meta.finish_reasons == ["length"]
    assert meta.usage == Usage(9, 2, 3)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id": "x", "choices": [{"index": 0, "mess',
        b"[]",
        b'{"id": "x"}',
        b'{"choices": "nope"}',
        b'{"choices": []}',
        b'{"choices": [1]}',
        b"\xff\xfe",
    ],
)
def test_malformed_bodies_are_refused(raw: bytes) -> None:
    with pytest.raises(UpstreamMalformed):
        parse_completion(raw, "kimi")


def test_chunks_must_be_objects_with_choices() -> None:
    assert parse_chunk('{"choices": []}', "glm") == {"choices": []}
    with pytest.raises(UpstreamMalformed):
        parse_chunk('{"id": "broken", "choices": [{"index": 0, "delta": {"content": "', "glm")
    with pytest.raises(UpstreamServerError):
        parse_chunk('{"error": {"message": "overloaded"}}', "glm")


def test_kimi_stream_usage_inside_the_finish_choice_is_taken_out() -> None:
    acc = StreamAccumulator()
    first = acc.absorb(
        {
            "id": "c1",
            "model": "kimi-k2",
            "created": 5,
            "choices": [{"index": 0, "delta": {"content": "hi"}}],
        }
    )
    assert first["object"] == "chat.completion.chunk"
    last = acc.absorb(
        {
            "id": "c1",
            "choices": [
                {
                    "index": 0,
                    "delta": {},
                    "finish_reason": "stop",
                    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "cached_tokens": 2},
                }
            ],
        }
    )
    assert "usage" not in last["choices"][0]
    assert acc.meta.usage == Usage(5, 1, 2)
    assert acc.meta.finish_reasons == ["stop"]
    tail = acc.usage_chunk()
    assert tail["choices"] == [] and tail["id"] == "c1" and tail["model"] == "kimi-k2"
    assert tail["created"] == 5
    assert tail["usage"]["prompt_tokens_details"] == {"cached_tokens": 2}


def test_glm_stream_usage_at_the_top_of_the_last_chunk_is_taken_out() -> None:
    acc = StreamAccumulator()
    last = acc.absorb(
        {
            "id": "g",
            "choices": [{"index": 0, "finish_reason": "stop", "delta": {}}],
            "usage": {
                "prompt_tokens": 8,
                "completion_tokens": 3,
                "prompt_tokens_details": {"cached_tokens": 1},
            },
        }
    )
    assert "usage" not in last
    assert acc.meta.usage == Usage(8, 3, 1)
