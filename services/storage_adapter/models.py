"""Domain records shared by the stores, the caches and the API (no I/O here)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from exai_contracts.ids import DEFAULT_CLIENT_ID

Role = Literal["user", "assistant", "system", "tool"]
ROLES: tuple[str, ...] = get_args(Role)

JsonObject = dict[str, Any]


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Naive values are taken to be UTC (SQLite, some drivers); aware ones are converted."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso_utc(value: datetime) -> str:
    """Fixed-width ISO 8601 in UTC, so that text order is time order (SQLite, caches)."""
    return as_utc(value).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Conversation:
    id: int
    continuation_id: str
    title: str | None
    metadata: JsonObject
    created_at: datetime
    updated_at: datetime
    client_id: str = DEFAULT_CLIENT_ID
    """The owner: only this client reads or appends to it (`X-EXAI-Client-ID`)."""

    def to_json(self) -> JsonObject:
        return {
            "id": self.id,
            "continuation_id": self.continuation_id,
            "client_id": self.client_id,
            "title": self.title,
            "metadata": self.metadata,
            "created_at": iso_utc(self.created_at),
            "updated_at": iso_utc(self.updated_at),
        }

    @classmethod
    def from_json(cls, data: JsonObject) -> Conversation:
        return cls(
            id=int(data["id"]),
            continuation_id=str(data["continuation_id"]),
            client_id=str(data["client_id"]),
            title=data["title"],
            metadata=dict(data["metadata"]),
            created_at=as_utc(datetime.fromisoformat(data["created_at"])),
            updated_at=as_utc(datetime.fromisoformat(data["updated_at"])),
        )


@dataclass(frozen=True)
class NewMessage:
    """A message as a client posts it."""

    role: Role
    content: str
    idempotency_key: str
    metadata: JsonObject = field(default_factory=dict)


@dataclass(frozen=True)
class Message:
    id: int
    conversation_id: int
    role: Role
    content: str
    metadata: JsonObject
    idempotency_key: str
    created_at: datetime

    def to_json(self) -> JsonObject:
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "role": self.role,
            "content": self.content,
            "metadata": self.metadata,
            "idempotency_key": self.idempotency_key,
            "created_at": iso_utc(self.created_at),
        }

    def to_json_text(self) -> str:
        # Sorted keys: the same message always serializes to the same text (Redis
        # sorted-set members are compared by value).
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: JsonObject) -> Message:
        role = data["role"]
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        return cls(
            id=int(data["id"]),
            conversation_id=int(data["conversation_id"]),
            role=role,
            content=str(data["content"]),
            metadata=dict(data["metadata"]),
            idempotency_key=str(data["idempotency_key"]),
            created_at=as_utc(datetime.fromisoformat(data["created_at"])),
        )


def is_same_request(existing: Message, conversation_id: int, new: NewMessage) -> bool:
    """A retry carries the same key for the same message in the same conversation.

    Metadata is not compared: clients may add tracing details on a retry.
    """
    return (
        existing.conversation_id == conversation_id
        and existing.role == new.role
        and existing.content == new.content
    )


@dataclass(frozen=True)
class History:
    """A conversation with its most recent messages, oldest first.

    ``complete`` is true when ``messages`` holds every message of the conversation.
    """

    conversation: Conversation
    messages: tuple[Message, ...]
    complete: bool

    def last(self, limit: int) -> tuple[tuple[Message, ...], bool]:
        """The last ``limit`` messages and whether older ones exist."""
        selected = self.messages[-limit:] if limit > 0 else ()
        has_more = len(self.messages) > len(selected) or not self.complete
        return selected, has_more

    def can_serve(self, limit: int) -> bool:
        return self.complete or len(self.messages) >= limit


@dataclass(frozen=True)
class AppendResult:
    conversation: Conversation
    message: Message
    created: bool
