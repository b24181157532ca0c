"""The SSE decoder and encoder."""

from __future__ import annotations

from provider_proxy.sse import DONE_EVENT, SseDecoder, encode_event


def feed_all(lines: list[str]) -> list[str]:
    decoder = SseDecoder()
    events = [e for line in lines if (e := decoder.feed(line)) is not None]
    if (last := decoder.flush()) is not None:
        events.append(last)
    return events


def test_events_end_at_blank_lines() -> None:
    assert feed_all(['data: {"a":1}', "", "data: [DONE]", ""]) == ['{"a":1}', "[DONE]"]


def test_comments_other_fields_and_keepalives_are_skipped() -> None:
    lines = [": keep-alive", "", "event: message", "id: 7", "retry: 100", "data:x", "", ""]
    assert feed_all(lines) == ["x"]


def test_multi_line_data_is_joined_and_a_missing_final_blank_line_is_tolerated() -> None:
    assert feed_all(["data: one", "data: two"]) == ["one\ntwo"]


def test_encoding() -> None:
    assert encode_event({"a": [1, 2]}) == b'data: {"a":[1,2]}\n\n'
    assert DONE_EVENT == b"data: [DONE]\n\n"
