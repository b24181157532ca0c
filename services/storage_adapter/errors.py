"""The adapter's exceptions and the error codes clients see.

Third-party errors (SQLAlchemy, asyncpg, redis, postgrest) are translated into these at
the store and cache boundaries; their messages never carry stored content.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    VALIDATION_ERROR = "VALIDATION_ERROR"
    NOT_FOUND = "NOT_FOUND"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    CONTINUATION_ID_TAKEN = "CONTINUATION_ID_TAKEN"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    STORAGE_UNAVAILABLE = "STORAGE_UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class StorageAdapterError(Exception):
    """Root of every exception the adapter raises on purpose."""


class StoreUnavailable(StorageAdapterError):
    """The durable store cannot be reached or used right now.

    ``in_doubt``: the failure came while a write was being committed, so it may have
    been stored after all (a retry with the same idempotency key tells).
    """

    def __init__(self, operation: str, reason: str, *, in_doubt: bool = False) -> None:
        super().__init__(f"durable store unavailable during {operation}: {reason}")
        self.operation = operation
        self.reason = reason
        self.in_doubt = in_doubt


class SchemaError(StoreUnavailable):
    """The store's tables are missing (Supabase: created by hand) or from a newer adapter."""

    def __init__(self, reason: str) -> None:
        super().__init__("initialize", reason)


class CacheUnavailable(StorageAdapterError):
    """The cache failed; callers fall back to the durable store."""


class ConversationNotFound(StorageAdapterError):
    def __init__(self, continuation_id: str) -> None:
        super().__init__(f"conversation {continuation_id!r} not found")
        self.continuation_id = continuation_id


class ContinuationIdTaken(StorageAdapterError):
    """Another client owns a conversation with this continuation ID (who, and what it
    holds, is not said)."""

    def __init__(self, continuation_id: str) -> None:
        super().__init__(
            f"continuation_id {continuation_id!r} is not available; choose another one"
        )
        self.continuation_id = continuation_id


class InvalidData(StorageAdapterError):
    """The durable store refused the data itself (SQLSTATE class 22 or 23, or the
    driver could not encode it): the request's fault, not an outage. The API checks
    input first; this is the backstop. The reason names codes, never the data."""

    def __init__(self, operation: str, reason: str) -> None:
        super().__init__(f"the durable store refused the data during {operation}: {reason}")
        self.operation = operation
        self.reason = reason


class IdempotencyConflict(StorageAdapterError):
    """The key was used before for a different message (role, content or conversation)."""

    def __init__(self, idempotency_key: str) -> None:
        super().__init__(
            f"idempotency_key {idempotency_key!r} was already used for a different message"
        )
        self.idempotency_key = idempotency_key


class LimitExceeded(StorageAdapterError):
    """An input is larger than a configured limit; the message names the setting."""
