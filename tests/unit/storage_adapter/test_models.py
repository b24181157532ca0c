"""Domain records: history slicing, retry identity, stable serialization, UTC."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from storage_adapter.models import (
    Conversation,
    Message,
    NewMessage,
    as_utc,
    is_same_request,
    iso_utc,
)
from tests.unit.storage_adapter.helpers import T0, conversation, history, message


def test_last_messages_and_has_more() -> None:
    complete = history(1, 2, 3)
    assert [m.id for m in complete.last(2)[0]] == [2, 3]
    assert complete.last(2)[1] is True
    assert complete.last(3)[1] is False
    assert complete.last(10) == (complete.messages, False)
    assert complete.last(0) == ((), True)
    assert history().last(0) == ((), False)

    partial = history(5, 6, complete=False)
    assert partial.last(2) == (partial.messages, True)


def test_can_serve_needs_enough_turns_or_everything() -> None:
    assert history(1, 2).can_serve(50)
    partial = history(5, 6, 7, complete=False)
    assert partial.can_serve(3)
    assert not partial.can_serve(4)


def test_a_retry_is_same_conversation_role_and_content() -> None:
    stored = message(1, "hello")
    assert is_same_request(stored, 7, NewMessage("user", "hello", "key-1", {"other": 1}))
    assert not is_same_request(stored, 8, NewMessage("user", "hello", "key-1"))
    assert not is_same_request(stored, 7, NewMessage("assistant", "hello", "key-1"))
    assert not is_same_request(stored, 7, NewMessage("user", "hello!", "key-1"))


def test_json_round_trip_is_lossless_and_stable() -> None:
    original = message(3, 'unicode ✓ "quotes"')
    assert Message.from_json(original.to_json()) == original
    assert original.to_json_text() == Message.from_json(original.to_json()).to_json_text()
    conv = conversation(updated_s=5)
    assert Conversation.from_json(conv.to_json()) == conv


def test_timestamps_are_fixed_width_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2025, 1, 2, 5, 4, 5, tzinfo=plus_two)
    assert iso_utc(local) == "2025-01-02T03:04:05.000000+00:00"
    assert iso_utc(T0) == "2025-01-02T03:04:05.678901+00:00"
    assert as_utc(datetime(2025, 1, 2, 3, 4, 5)).utcoffset() == timedelta(0)
    assert len({len(iso_utc(T0 + timedelta(microseconds=n))) for n in range(0, 10**6, 99991)}) == 1
