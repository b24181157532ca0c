"""Postgres and SQLite through SQLAlchemy async Core.

Idempotent writes are race-safe by construction: ``INSERT … ON CONFLICT DO NOTHING``
on the unique column, then read back, inside one transaction. A message append first
touches its conversation's row, which in Postgres serializes appends to one
conversation, so message ids (the history order) follow commit order; it checks the
conversation's owner in that same transaction, before anything is written.

Errors: the database refusing the data (SQLSTATE class 22 "data exception" or 23
"integrity constraint violation", SQLite's IntegrityError and DataError, a value the
driver cannot encode) is :class:`InvalidData`, the request's fault; everything else
from the driver is :class:`StoreUnavailable`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from opentelemetry.instrumentation.utils import suppress_instrumentation
from sqlalchemy import Row, event, func, inspect, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.schema import CreateIndex, CreateTable

from exai_telemetry.redaction import redact_url
from storage_adapter.errors import (
    ConversationNotFound,
    IdempotencyConflict,
    InvalidData,
    SchemaError,
    StoreUnavailable,
)
from storage_adapter.models import (
    AppendResult,
    Conversation,
    History,
    JsonObject,
    Message,
    NewMessage,
    is_same_request,
    utc_now,
)
from storage_adapter.store.tables import (
    CLIENT_ID_CHARS,
    SCHEMA_VERSION,
    conversations,
    messages,
    metadata,
    schema_version,
)

logger = logging.getLogger(__name__)

# Any constant works; it only has to be the same for every adapter sharing a database.
_MIGRATION_LOCK_KEY = 0x45584149  # "EXAI"

_UNAVAILABLE_ERRORS = (
    DBAPIError,
    PoolTimeoutError,
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


# SQLSTATE classes of errors about the data itself, not the database.
_DATA_ERROR_CLASSES = ("22", "23")


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error (asyncpg, through SQLAlchemy), if it has one."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code if isinstance(code, str) else None


def data_error(exc: BaseException) -> str | None:
    """Why the database refused the data (a code, never the data), or None when
    ``exc`` is not about the data."""
    code = sqlstate(exc)
    if code is not None:
        return f"SQLSTATE {code}" if code[:2] in _DATA_ERROR_CLASSES else None
    if isinstance(exc, IntegrityError | DataError):
        return describe_error(exc)
    if isinstance(exc, UnicodeError):
        return f"{type(exc).__name__} (text the driver cannot encode)"
    return None


def describe_error(exc: BaseException) -> str:
    """Exception type names (and socket errors' text): never SQL parameters or content."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"{type(exc).__name__}/{type(exc.orig).__name__}"
    if isinstance(exc, OSError) and str(exc):
        return f"{type(exc).__name__}: {exc}"[:200]
    return type(exc).__name__


def describe_location(url: str) -> str:
    """For logs: the SQLite file's absolute path, or the Postgres URL without password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return os.path.abspath(parsed.database or "")
    return redact_url(url)


def create_engine(url: str, *, timeout_s: float, pool_size: int) -> AsyncEngine:
    """The engine for a `postgresql+asyncpg://` or `sqlite+aiosqlite://` URL."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            hide_parameters=True,
            pool_pre_ping=True,
            pool_timeout=timeout_s,
            connect_args={"timeout": timeout_s},
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        # Exceptions then never carry message content in their text.
        hide_parameters=True,
        # A connection broken by a database restart is replaced, not handed out.
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=timeout_s,
        connect_args={"timeout": timeout_s, "command_timeout": timeout_s},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL (a property of the file, kept across connections): readers never block the
        # writer. Switching needs a moment alone with a new file; when another
        # connection is busy with it (and switching it), this one just goes on.
        cursor.execute("PRAGMA journal_mode")
        if str(cursor.fetchone()[0]).lower() != "wal":
            with contextlib.suppress(sqlite3.OperationalError):
                cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


class _Duplicate(Exception):
    """Rolls back an append whose idempotency key already exists."""

    def __init__(self, existing: Message, conversation: Conversation) -> None:
        super().__init__("duplicate idempotency key")
        self.existing = existing
        self.conversation = conversation


class SqlStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.backend = "postgresql" if engine.dialect.name == "postgresql" else "sqlite"

    @contextlib.asynccontextmanager
    async def _errors(self, operation: str) -> AsyncIterator[None]:
        try:
            yield
        except (*_UNAVAILABLE_ERRORS, UnicodeError) as exc:
            refused = data_error(exc)
            if refused is not None:
                raise InvalidData(operation, refused) from exc
            raise StoreUnavailable(operation, describe_error(exc)) from exc

    def _insert(self, table: Any) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    async def initialize(self) -> None:
        async with self._errors("initialize"), self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                # Two adapters starting together must not both run the DDL.
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            for table in metadata.sorted_tables:
                await conn.execute(CreateTable(table, if_not_exists=True))
                for index in sorted(table.indexes, key=lambda i: str(i.name)):
                    await conn.execute(CreateIndex(index, if_not_exists=True))
            current = (await conn.execute(select(func.max(schema_version.c.version)))).scalar()
            if current is not None and current > SCHEMA_VERSION:
                raise SchemaError(
                    f"database schema version {current} is newer than this adapter's "
                    f"({SCHEMA_VERSION}); upgrade the storage adapter"
                )
            if current is not None and current < 2:
                await self._add_client_id(conn)
            if current != SCHEMA_VERSION:
                # DO NOTHING: another adapter (SQLite has no advisory lock) may have won.
                await conn.execute(
                    self._insert(schema_version)
                    .values(version=SCHEMA_VERSION, applied_at=utc_now())
                    .on_conflict_do_nothing(index_elements=["version"])
                )
                logger.info("storage schema at version %d (was %s)", SCHEMA_VERSION, current)

    async def _add_client_id(self, conn: AsyncConnection) -> None:
        """Version 2: conversations get an owner; existing ones belong to `default`."""

        def has_column(sync: Connection) -> bool:
            columns = inspect(sync).get_columns("conversations")
            return any(column["name"] == "client_id" for column in columns)

        if await conn.run_sync(has_column):
            return
        statement = text(
            f"ALTER TABLE conversations ADD COLUMN client_id VARCHAR({CLIENT_ID_CHARS}) "
            "NOT NULL DEFAULT 'default'"
        )
        try:
            await conn.execute(statement)
        except DBAPIError:
            # SQLite (no advisory lock): another adapter starting at the same moment
            # may have added it between the check and here.
            if not await conn.run_sync(has_column):
                raise

    async def ping(self) -> None:
        # Health probes run every few seconds: no spans for them.
        with suppress_instrumentation():
            async with self._errors("ping"), self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

    async def get_or_create_conversation(
        self,
        continuation_id: str,
        client_id: str,
        title: str | None,
        metadata: JsonObject,
        now: datetime,
    ) -> tuple[Conversation, bool]:
        async with self._errors("create_conversation"), self.engine.begin() as conn:
            return await self._get_or_create(conn, continuation_id, client_id, title, metadata, now)

    async def _get_or_create(
        self,
        conn: AsyncConnection,
        continuation_id: str,
        client_id: str,
        title: str | None,
        metadata: JsonObject,
        now: datetime,
    ) -> tuple[Conversation, bool]:
        inserted = await conn.execute(
            self._insert(conversations)
            .values(
                continuation_id=continuation_id,
                client_id=client_id,
                title=title,
                metadata=metadata,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["continuation_id"])
            .returning(*conversations.c)
        )
        row = inserted.first()
        if row is not None:
            return _conversation(row), True
        existing = await conn.execute(
            select(conversations).where(conversations.c.continuation_id == continuation_id)
        )
        return _conversation(existing.one()), False

    async def load_history(self, continuation_id: str, limit: int) -> History | None:
        async with self._errors("get_conversation"), self.engine.connect() as conn:
            found = await conn.execute(
                select(conversations).where(conversations.c.continuation_id == continuation_id)
            )
            row = found.first()
            if row is None:
                return None
            conversation = _conversation(row)
            # One row more than asked: tells whether older messages exist.
            recent = await conn.execute(
                select(messages)
                .where(messages.c.conversation_id == conversation.id)
                .order_by(messages.c.id.desc())
                .limit(limit + 1)
            )
            rows = recent.all()
        newest_first = [_message(r) for r in rows[:limit]]
        return History(conversation, tuple(reversed(newest_first)), len(rows) <= limit)

    async def append_message(
        self, continuation_id: str, client_id: str, message: NewMessage, now: datetime
    ) -> AppendResult:
        committing = False
        try:
            async with self._errors("append_message"), self.engine.begin() as conn:
                conversation, _ = await self._get_or_create(
                    conn, continuation_id, client_id, None, {}, now
                )
                if conversation.client_id != client_id:
                    raise ConversationNotFound(continuation_id)
                await conn.execute(
                    update(conversations)
                    .where(conversations.c.id == conversation.id)
                    .values(updated_at=now)
                )
                inserted = await conn.execute(
                    self._insert(messages)
                    .values(
                        conversation_id=conversation.id,
                        role=message.role,
                        content=message.content,
                        metadata=message.metadata,
                        idempotency_key=message.idempotency_key,
                        created_at=now,
                    )
                    .on_conflict_do_nothing(index_elements=["idempotency_key"])
                    .returning(*messages.c)
                )
                row = inserted.first()
                if row is None:
                    existing = await conn.execute(
                        select(messages).where(
                            messages.c.idempotency_key == message.idempotency_key
                        )
                    )
                    raise _Duplicate(_message(existing.one()), conversation)
                # Leaving the block commits: a failure from here on may come after the
                # database has committed (before, it rolls back).
                committing = True
        except StoreUnavailable as exc:
            if committing:
                raise StoreUnavailable(exc.operation, exc.reason, in_doubt=True) from exc
            raise
        except _Duplicate as duplicate:
            if not is_same_request(duplicate.existing, duplicate.conversation.id, message):
                raise IdempotencyConflict(message.idempotency_key) from None
            return AppendResult(duplicate.conversation, duplicate.existing, created=False)
        updated = replace(conversation, updated_at=now)
        return AppendResult(updated, _message(row), created=True)

    async def close(self) -> None:
        with contextlib.suppress(SQLAlchemyError, OSError):
            await self.engine.dispose()


def _conversation(row: Row[Any]) -> Conversation:
    m = row._mapping
    return Conversation(
        id=int(m["id"]),
        continuation_id=m["continuation_id"],
        client_id=m["client_id"],
        title=m["title"],
        metadata=dict(m["metadata"] or {}),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def _message(row: Row[Any]) -> Message:
    m = row._mapping
    return Message(
        id=int(m["id"]),
        conversation_id=int(m["conversation_id"]),
        role=m["role"],
        content=m["content"],
        metadata=dict(m["metadata"] or {}),
        idempotency_key=m["idempotency_key"],
        created_at=m["created_at"],
    )
