"""The durable store: one protocol, three backends.

- :class:`~storage_adapter.store.sql.SqlStore` — SQLAlchemy async Core; serves Postgres
  (asyncpg) and the embedded SQLite default (aiosqlite), creating its schema at start-up
- :class:`~storage_adapter.store.supabase.SupabaseStore` — Supabase REST (supabase-py);
  the tables are created by hand from ``schema.sql`` (REST cannot run DDL)

Every method raises :class:`~storage_adapter.errors.StoreUnavailable` when the store
cannot be used and :class:`~storage_adapter.errors.InvalidData` when it refuses the
data itself; nothing else from a driver escapes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from storage_adapter.models import AppendResult, Conversation, History, JsonObject, NewMessage


class DurableStore(Protocol):
    backend: str
    """`postgresql`, `sqlite` or `supabase`: the health component's name."""

    async def initialize(self) -> None:
        """Create (SQL) or verify (Supabase) the schema; safe to call repeatedly."""

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers a trivial query."""

    async def get_or_create_conversation(
        self,
        continuation_id: str,
        client_id: str,
        title: str | None,
        metadata: JsonObject,
        now: datetime,
    ) -> tuple[Conversation, bool]:
        """The conversation, and whether this call created it (race-safe) for
        ``client_id``. An existing one is returned whoever owns it: the caller checks."""

    async def load_history(self, continuation_id: str, limit: int) -> History | None:
        """The conversation and its last ``limit`` messages, oldest first; None if absent."""

    async def append_message(
        self, continuation_id: str, client_id: str, message: NewMessage, now: datetime
    ) -> AppendResult:
        """Store ``message`` once per idempotency key, creating the conversation (owned
        by ``client_id``) if needed.

        A retry returns the stored message with ``created=False``; a key reused for a
        different message raises IdempotencyConflict and changes nothing; another
        client's conversation raises ConversationNotFound and changes nothing.
        """

    async def close(self) -> None: ...
