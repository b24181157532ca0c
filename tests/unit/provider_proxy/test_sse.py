"""The SSE line splitter, decoder and encoder."""

from __future__ import annotations

import pytest

from provider_proxy.sse import (
    DONE_EVENT,
    LineSplitter,
    SseDecoder,
    SseLimitExceeded,
    encode_event,
)


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


def split_all(reads: list[bytes], max_bytes: int = 64) -> list[bytes]:
    splitter = LineSplitter(max_bytes)
    lines = [line for data in reads for line in splitter.feed(data)]
    if (tail := splitter.finish()) is not None:
        lines.append(tail)
    return lines


def test_lines_end_at_lf_crlf_or_cr_however_the_reads_fall() -> None:
    assert split_all([b"a\nb\r\nc\rd"]) == [b"a", b"b", b"c", b"d"]
    # A CRLF split across two reads is one line end, not two.
    assert split_all([b"a\r", b"\nb\r", b"", b"\n"]) == [b"a", b"b"]
    assert split_all([b"da", b"ta: x", b"\n\n"]) == [b"data: x", b""]


def test_every_byte_split_gives_the_same_lines() -> None:
    raw = b'data: {"a":1}\r\n\r\n: ping\rdata: [DONE]\n\n'
    whole = split_all([raw])
    for cut in range(len(raw) + 1):
        assert split_all([raw[:cut], raw[cut:]]) == whole
    assert split_all([bytes([b]) for b in raw]) == whole


def test_a_line_over_the_limit_is_refused_before_it_is_buffered_whole() -> None:
    splitter = LineSplitter(16)
    assert splitter.feed(b"x" * 16) == []
    with pytest.raises(SseLimitExceeded, match="longer than 16 bytes"):
        splitter.feed(b"x")  # no line end yet, and already too long
    with pytest.raises(SseLimitExceeded):
        LineSplitter(16).feed(b"ok\n" + b"y" * 17 + b"\n")  # complete, but too long
    assert LineSplitter(16).feed(b"y" * 16 + b"\n") == [b"y" * 16]


def test_an_event_over_the_limit_is_refused_even_in_short_lines() -> None:
    decoder = SseDecoder(max_bytes=18)  # three lines of 5 characters and a newline each
    for _ in range(3):
        assert decoder.feed("data: 12345") is None
    with pytest.raises(SseLimitExceeded, match="event"):
        decoder.feed("data: 12345")
