"""Requests are parsed strictly where the simulator reads them, loosely elsewhere."""

from __future__ import annotations

import json

import pytest

from llm_simulator.errors import ApiError, ErrorKind
from llm_simulator.generation import Turn
from llm_simulator.schema import parse_chat_request


def body(**fields: object) -> bytes:
    base: dict[str, object] = {"model": "glm-4.5", "messages": [{"role": "user", "content": "hi"}]}
    return json.dumps({**base, **fields}).encode()


def test_minimal_request_with_unknown_fields_accepted() -> None:
    chat = parse_chat_request(body(temperature=0.2, tools=[], max_tokens=10))
    assert chat.model == "glm-4.5"
    assert chat.stream is False
    assert chat.include_usage is False
    assert chat.turns() == [Turn("user", "hi")]


def test_content_parts_and_null_content_become_text() -> None:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url"}]},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "content": "42", "tool_call_id": "c1"},
    ]
    chat = parse_chat_request(body(messages=messages))
    assert chat.turns() == [Turn("user", "look"), Turn("assistant", ""), Turn("tool", "42")]


def test_stream_options_include_usage() -> None:
    chat = parse_chat_request(body(stream=True, stream_options={"include_usage": True}))
    assert chat.stream and chat.include_usage


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (body(messages=[]), "messages"),
        (body(messages="hi"), "messages"),
        (body(messages=[{"role": "wizard", "content": "x"}]), "messages.0.role"),
        (body(model=""), "model"),
        (body(model=5), "model"),
        (body(stream="yes"), "stream"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(), "model"),
    ],
)
def test_bad_requests_are_400s_that_say_what_is_wrong(raw: bytes, fragment: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_chat_request(raw)
    assert caught.value.kind is ErrorKind.BAD_REQUEST
    assert fragment in caught.value.message


def test_error_message_does_not_echo_the_prompt() -> None:
    secret_prompt = "my private medical question"
    raw = body(messages=[{"role": "wizard", "content": secret_prompt}])
    with pytest.raises(ApiError) as caught:
        parse_chat_request(raw)
    assert secret_prompt not in caught.value.message
