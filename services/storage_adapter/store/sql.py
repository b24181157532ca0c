"""Postgres and SQLite through SQLAlchemy async Core.

Idempotent writes are race-safe by construction: ``INSERT … ON CONFLICT DO NOTHING``
on the unique column, then read back, inside one transaction. A message append first
touches its conversation's row, which in Postgres serializes appends to one
conversation, so message ids (the history order) follow commit order; it checks the
conversation's owner in that same transaction, before anything is written.

Postgres group commit (:mod:`.batch`): appends that arrive while another is being
written share one transaction, each in its own SAVEPOINT, so N messages cost one WAL
flush and a refused message, a duplicate or another client's conversation undoes only
itself. Outcomes are answered after the COMMIT; a failed COMMIT leaves every message the
batch stored in doubt. A lone append is the one-message transaction as before.

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
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import Link, StatusCode
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
    StorageAdapterError,
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
from storage_adapter.store.batch import GroupCommit, Pending
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


# Group commit: at most MAX_BATCH messages share a transaction, at most
# MAX_BATCHES_IN_FLIGHT such transactions run at once (each on its own connection).
MAX_BATCH = 32
MAX_BATCHES_IN_FLIGHT = 2
# Keep a write inside its cache write lease (WRITE_LEASE_DB_TIMEOUTS): a message starts
# within QUEUE_DB_TIMEOUTS database timeouts of arriving or fails unwritten, and a batch
# starts no message BATCH_DB_TIMEOUTS after it began (the rest go to the next batch).
# Worst case: 6 (queue) + 2 (batch) + 7 (last message's statements with its savepoint)
# + 1 (COMMIT) + 3 (pool wait, connect, pre-ping) = 19 timeouts.
QUEUE_DB_TIMEOUTS = 6
BATCH_DB_TIMEOUTS = 2
# SQLSTATE class 40, "transaction rollback": deadlock, serialization failure.
_ROLLBACK_CLASS = "40"
BATCH_SIZE = "exai.storage.batch.size"
BATCH_STORED = "exai.storage.batch.stored"


class _Duplicate(Exception):
    """Rolls back an append whose idempotency key already exists."""

    def __init__(self, existing: Message, conversation: Conversation) -> None:
        super().__init__("duplicate idempotency key")
        self.existing = existing
        self.conversation = conversation


@dataclass(frozen=True)
class _Append:
    continuation_id: str
    client_id: str
    message: NewMessage
    now: datetime


_PendingAppend = Pending[_Append, AppendResult]
# A batch member's outcome before the commit: stored (the conversation and the row), a
# duplicate to answer once committed, or the error for that message alone.
_Outcome = tuple[Conversation, Row[Any]] | _Duplicate | StorageAdapterError


class SqlStore:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        timeout_s: float = 5.0,
        tracer: trace.Tracer | None = None,
        on_commit: Callable[[int], None] | None = None,
        group_commit: bool | None = None,
    ) -> None:
        """``group_commit``: share commits between concurrent appends (see
        :mod:`.batch`); by default for Postgres only. ``on_commit`` gets the number of
        messages each committed append transaction stored."""
        self.engine = engine
        self.backend = "postgresql" if engine.dialect.name == "postgresql" else "sqlite"
        self._timeout_s = timeout_s
        self._tracer = tracer or trace.get_tracer(__name__)
        self._on_commit = on_commit or (lambda _count: None)
        if group_commit is None:
            # SQLite: pysqlite's implicit transactions turn an outermost SAVEPOINT's
            # RELEASE into a COMMIT, and one writer at a time leaves little to share.
            group_commit = self.backend == "postgresql"
        self._batcher: GroupCommit[_Append, AppendResult] | None = None
        if group_commit:
            self._batcher = GroupCommit(
                self._append_batch,
                max_batch=MAX_BATCH,
                max_in_flight=MAX_BATCHES_IN_FLIGHT,
                queue_timeout_s=QUEUE_DB_TIMEOUTS * timeout_s,
                expired=_queue_expired,
            )

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
        request = _Append(continuation_id, client_id, message, now)
        if self._batcher is None:
            result = await self._append_alone(request)
            if result.created:
                self._on_commit(1)
            return result
        return await self._batcher.submit(request)

    async def _append_alone(self, request: _Append) -> AppendResult:
        """One message, one transaction."""
        committing = False
        try:
            async with self._errors("append_message"), self.engine.begin() as conn:
                conversation, row = await self._append_in(conn, request)
                # Leaving the block commits: a failure from here on may come after the
                # database has committed (before, it rolls back).
                committing = True
        except StoreUnavailable as exc:
            if committing:
                raise StoreUnavailable(exc.operation, exc.reason, in_doubt=True) from exc
            raise
        except _Duplicate as duplicate:
            return _replay(duplicate, request.message)
        return _appended(conversation, row, request.now)

    async def _append_in(
        self, conn: AsyncConnection, request: _Append
    ) -> tuple[Conversation, Row[Any]]:
        """The statements of one append; raises _Duplicate for a known idempotency key."""
        continuation_id, client_id, message, now = (
            request.continuation_id,
            request.client_id,
            request.message,
            request.now,
        )
        conversation, _ = await self._get_or_create(conn, continuation_id, client_id, None, {}, now)
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
                select(messages).where(messages.c.idempotency_key == message.idempotency_key)
            )
            raise _Duplicate(_message(existing.one()), conversation)
        return conversation, row

    async def _append_batch(self, batch: list[_PendingAppend]) -> list[_PendingAppend]:
        """Group commit (see :mod:`.batch`); returns the appends it did not start."""
        if len(batch) == 1:  # nothing to share: the plain path, no savepoint
            item = batch[0]
            token = otel_context.attach(item.context)
            try:
                result = await self._append_alone(item.request)
            except StorageAdapterError as exc:
                item.settle(exc)
            else:
                item.settle(result)
                if result.created:
                    self._on_commit(1)
            finally:
                otel_context.detach(token)
            return []
        # Conversation rows are locked in one order (continuation ID) in every batch, so
        # two batches in flight cannot deadlock on them; sorted() is stable, so a
        # conversation's messages keep their arrival order (and their ids that order).
        ordered = sorted(batch, key=lambda item: item.request.continuation_id)
        stop_at = time.monotonic() + BATCH_DB_TIMEOUTS * self._timeout_s
        outcomes: dict[_PendingAppend, _Outcome] = {}
        left: list[_PendingAppend] = []
        committing = False
        # The batch's own span (its connection, BEGIN and COMMIT) belongs to the trace of
        # the append that opened it, with that request's correlation ID (on every span,
        # DESIGN §6); every member's request span is linked, so each caller's trace
        # leads to the commit its message rode in.
        opener = batch[0].context
        links = [Link(trace.get_current_span(item.context).get_span_context()) for item in batch]
        with self._tracer.start_as_current_span(
            "append_message batch",
            context=opener,
            links=links,
            attributes={BATCH_SIZE: len(batch)},
        ) as span:
            try:
                async with self._errors("append_message"), self.engine.begin() as conn:
                    for index, item in enumerate(ordered):
                        now = time.monotonic()
                        if outcomes and now > stop_at:
                            left = ordered[index:]  # the next batch starts them
                            break
                        if now > item.deadline:
                            outcomes[item] = _queue_expired()
                            continue
                        token = otel_context.attach(item.context)
                        try:
                            outcomes[item] = await self._append_savepoint(conn, item.request)
                        finally:
                            otel_context.detach(token)
                    committing = True
            except StorageAdapterError as exc:
                reason = exc.reason if isinstance(exc, StoreUnavailable) else str(exc)
                span.set_status(StatusCode.ERROR, reason)
                for item in ordered:
                    item.settle(_batch_failed(outcomes.get(item), reason, committing))
                return []
            stored = 0
            for item, outcome in outcomes.items():
                if isinstance(outcome, tuple):
                    stored += 1
                    item.settle(_appended(*outcome, item.request.now))
                elif isinstance(outcome, _Duplicate):
                    try:
                        item.settle(_replay(outcome, item.request.message))
                    except IdempotencyConflict as conflict:
                        item.settle(conflict)
                else:
                    item.settle(outcome)
            span.set_attribute(BATCH_STORED, stored)
        if stored:
            self._on_commit(stored)
        return left

    async def _append_savepoint(self, conn: AsyncConnection, request: _Append) -> _Outcome:
        """One append of a batch in its own SAVEPOINT: a message the database refuses
        (or a duplicate, or another client's conversation) undoes only itself."""
        try:
            async with conn.begin_nested():
                return await self._append_in(conn, request)
        except (_Duplicate, ConversationNotFound) as exc:
            return exc
        except (*_UNAVAILABLE_ERRORS, UnicodeError) as exc:
            refused = data_error(exc)
            if refused is not None:
                return InvalidData("append_message", refused)
            code = sqlstate(exc)
            if code is not None and code[:2] == _ROLLBACK_CLASS:
                # Deadlock or serialization failure (only a key reused across
                # conversations by two adapters can cause one): this message only.
                return StoreUnavailable("append_message", describe_error(exc))
            raise

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.wait_idle()
        with contextlib.suppress(SQLAlchemyError, OSError):
            await self.engine.dispose()


def _queue_expired() -> StoreUnavailable:
    return StoreUnavailable("append_message", "waited too long for a write (nothing written)")


def _replay(duplicate: _Duplicate, message: NewMessage) -> AppendResult:
    if not is_same_request(duplicate.existing, duplicate.conversation.id, message):
        raise IdempotencyConflict(message.idempotency_key) from None
    return AppendResult(duplicate.conversation, duplicate.existing, created=False)


def _appended(conversation: Conversation, row: Row[Any], now: datetime) -> AppendResult:
    return AppendResult(replace(conversation, updated_at=now), _message(row), created=True)


def _batch_failed(outcome: _Outcome | None, reason: str, committing: bool) -> StorageAdapterError:
    """A batch member's answer when its transaction failed."""
    if isinstance(outcome, InvalidData | ConversationNotFound):
        return outcome  # refused on its own: true whatever became of the others
    if isinstance(outcome, StoreUnavailable):
        return outcome
    # Stored in a transaction whose COMMIT failed: it may have landed.
    in_doubt = committing and isinstance(outcome, tuple)
    return StoreUnavailable("append_message", reason, in_doubt=in_doubt)


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
