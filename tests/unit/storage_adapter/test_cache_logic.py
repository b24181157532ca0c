"""Pure cache rules: turn cap, ordered merge, entry decoding."""

from __future__ import annotations

import json

import pytest

from storage_adapter.cache import cap_history, later_conversation, merge_message
from storage_adapter.cache.redis import EPOCH_KEY, decode_entry, keys
from tests.unit.storage_adapter.helpers import conversation, history, message


def test_cap_keeps_the_newest_turns_and_marks_incomplete() -> None:
    assert cap_history(history(1, 2, 3), 3) == history(1, 2, 3)
    capped = cap_history(history(1, 2, 3, 4), 2)
    assert [m.id for m in capped.messages] == [3, 4]
    assert capped.complete is False


def test_merge_orders_by_id_once_and_caps() -> None:
    cached = (message(1), message(3))
    merged, cut = merge_message(cached, message(2), 5)
    assert [m.id for m in merged] == [1, 2, 3] and cut is False
    again, cut = merge_message(merged, message(2), 5)
    assert again == merged and cut is False
    capped, cut = merge_message(merged, message(4), 3)
    assert [m.id for m in capped] == [2, 3, 4] and cut is True


def test_later_conversation_keeps_the_newest_update() -> None:
    old, new = conversation(updated_s=1), conversation(updated_s=9)
    assert later_conversation(old, new).updated_at == new.updated_at
    assert later_conversation(new, old) == new


def test_redis_keys_are_per_conversation_plus_one_epoch() -> None:
    conv, msgs, gen, epoch, leases = keys("abc")
    own = (conv, msgs, gen, leases)
    assert len(set(own)) == 4 and all("abc" in k for k in own)
    assert epoch == EPOCH_KEY and keys("other")[3] == EPOCH_KEY


def _fields(count: int, epoch: str = "3") -> dict[str, str]:
    conv = conversation().to_json()
    return {
        "conv": json.dumps(conv),
        "updated_at": "2030-01-01T00:00:00.000000+00:00",
        "complete": "1",
        "epoch": epoch,
        "count": str(count),
    }


def test_decode_entry_uses_the_latest_update_time() -> None:
    members = [message(1).to_json_text(), message(2).to_json_text()]
    decoded = decode_entry(_fields(2), members, "3")
    assert decoded is not None
    assert [m.id for m in decoded.messages] == [1, 2] and decoded.complete
    assert decoded.conversation.updated_at.year == 2030


def test_decode_entry_rejects_old_epochs_and_partial_entries() -> None:
    members = [message(1).to_json_text()]
    assert decode_entry({}, [], "0") is None
    assert decode_entry(_fields(1, epoch="2"), members, "3") is None
    assert decode_entry(_fields(2), members, "3") is None  # half-expired entry


def test_an_entry_without_an_owner_is_not_served() -> None:
    """Written by an adapter from before owners: the lookup treats it as a miss."""
    fields = _fields(0)
    data = json.loads(fields["conv"])
    del data["client_id"]
    with pytest.raises(KeyError):
        decode_entry({**fields, "conv": json.dumps(data)}, [], "3")
