"""Records for unit tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage_adapter.models import Conversation, History, Message, Role

T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def conversation(updated_s: int = 0, continuation_id: str = "conv-1") -> Conversation:
    return Conversation(
        7, continuation_id, "title", {"k": "v"}, T0, T0 + timedelta(seconds=updated_s)
    )


def message(message_id: int, content: str | None = None, role: Role = "user") -> Message:
    return Message(
        id=message_id,
        conversation_id=7,
        role=role,
        content=content if content is not None else f"m{message_id}",
        metadata={"n": message_id},
        idempotency_key=f"key-{message_id}",
        created_at=T0 + timedelta(seconds=message_id),
    )


def history(*ids: int, complete: bool = True) -> History:
    return History(conversation(), tuple(message(i) for i in ids), complete)
