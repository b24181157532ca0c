"""Request bodies, input limits and the JSON documents the API returns.

Responses (all timestamps ISO 8601 UTC):

- conversation: ``{id, continuation_id, title, metadata, created_at, updated_at}``;
  ``GET`` adds ``messages`` (oldest first) and ``has_more`` (older messages exist)
- message: ``{id, conversation_id, continuation_id, role, content, metadata,
  idempotency_key, created_at}``
- error: ``{"error": {"code", "message"}}`` (+ ``details`` for validation errors)

Text (content, title, metadata strings and keys) must be storable: no NUL, no lone
surrogate; metadata numbers finite, nesting bounded; tracing keys are dropped from
metadata (:mod:`storage_adapter.checks`). The owner of a conversation is never part
of a document: only the owner ever sees one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, StrictStr

from exai_contracts.ids import CONTINUATION_ID_PATTERN
from storage_adapter.checks import check_text, clean_metadata
from storage_adapter.errors import LimitExceeded
from storage_adapter.models import Conversation, JsonObject, Message, Role

# Printable ASCII without spaces: safe in logs, URLs and unique indexes.
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]{1,255}$"
MAX_TITLE_CHARS = 512

StorableText = Annotated[StrictStr, AfterValidator(check_text)]
Metadata = Annotated[dict[str, Any], AfterValidator(clean_metadata)]


class CreateConversationBody(BaseModel):
    continuation_id: StrictStr | None = Field(default=None, pattern=CONTINUATION_ID_PATTERN)
    title: StorableText | None = Field(default=None, max_length=MAX_TITLE_CHARS)
    metadata: Metadata = Field(default_factory=dict)


class AppendMessageBody(BaseModel):
    role: Role
    content: StorableText
    idempotency_key: StrictStr = Field(pattern=IDEMPOTENCY_KEY_PATTERN)
    metadata: Metadata = Field(default_factory=dict)


@dataclass(frozen=True)
class Limits:
    """The configurable bounds (the pydantic models hold the fixed ones)."""

    max_content_chars: int
    max_metadata_bytes: int
    history_default: int
    history_max: int

    def check_metadata(self, metadata: JsonObject) -> None:
        size = len(json.dumps(metadata, separators=(",", ":")).encode())
        if size > self.max_metadata_bytes:
            raise LimitExceeded(
                f"metadata is {size} bytes as JSON; the limit is {self.max_metadata_bytes} "
                "(EXAI_MAX_METADATA_BYTES)"
            )

    def check_content(self, content: str) -> None:
        if len(content) > self.max_content_chars:
            raise LimitExceeded(
                f"content is {len(content)} characters; the limit is {self.max_content_chars} "
                "(EXAI_MAX_CONTENT_CHARS)"
            )

    def history_limit(self, requested: int | None) -> int:
        if requested is None:
            return self.history_default
        if requested > self.history_max:
            raise LimitExceeded(
                f"limit {requested} exceeds the maximum {self.history_max} (EXAI_HISTORY_MAX_LIMIT)"
            )
        return requested


def conversation_document(conversation: Conversation) -> JsonObject:
    document = conversation.to_json()
    del document["client_id"]
    return document


def history_document(
    conversation: Conversation, messages: tuple[Message, ...], has_more: bool
) -> JsonObject:
    return {
        **conversation_document(conversation),
        "messages": [message_document(m, conversation.continuation_id) for m in messages],
        "has_more": has_more,
    }


def message_document(message: Message, continuation_id: str) -> JsonObject:
    return {**message.to_json(), "continuation_id": continuation_id}
