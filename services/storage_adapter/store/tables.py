"""The schema (DESIGN §5) as SQLAlchemy Core tables, for Postgres and SQLite alike.

Timestamps are UTC: ``timestamptz`` in Postgres, fixed-width ISO 8601 text with
``+00:00`` in SQLite (so that text order is time order). ``schema_version`` records
which migrations ran: version 1 is the initial schema; version 2 adds
``conversations.client_id`` (the owner; existing rows belong to ``default``). A new
database gets the latest tables at once. Keep ``schema.sql`` (the DDL for Supabase,
where the adapter cannot run DDL) in step with this file.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeEngine

from exai_contracts.ids import DEFAULT_CLIENT_ID
from storage_adapter.models import ROLES, as_utc, iso_utc

SCHEMA_VERSION = 2
CLIENT_ID_CHARS = 64


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python; timestamptz in Postgres, ISO text in SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(32))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return iso_utc(value)
        return as_utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return as_utc(datetime.fromisoformat(value))
        return as_utc(value)


# SQLite only auto-increments INTEGER PRIMARY KEY columns.
_BigId = BigInteger().with_variant(Integer(), "sqlite")
_Json = JSON().with_variant(JSONB(), "postgresql")

metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", UtcDateTime(), nullable=False),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("continuation_id", String(128), nullable=False, unique=True),
    Column(
        "client_id",
        String(CLIENT_ID_CHARS),
        nullable=False,
        server_default=DEFAULT_CLIENT_ID,
    ),
    Column("title", Text, nullable=True),
    Column("metadata", _Json, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

_role_list = ", ".join(f"'{role}'" for role in ROLES)

messages = Table(
    "messages",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column(
        "conversation_id",
        _BigId,
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("metadata", _Json, nullable=False),
    Column("idempotency_key", String(255), nullable=False, unique=True),
    Column("created_at", UtcDateTime(), nullable=False),
    CheckConstraint(f"role IN ({_role_list})", name="messages_role_check"),
    Index("messages_conversation_id_id_idx", "conversation_id", "id"),
)
