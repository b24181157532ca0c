"""Supabase REST (PostgREST through supabase-py's async client).

The tables must exist already: REST cannot run DDL, so the operator runs
``services/storage_adapter/schema.sql`` once (Supabase SQL editor or psql).
:meth:`SupabaseStore.initialize` only checks that the tables and columns are there and
makes readiness fail with that instruction when they are not.

Idempotency rides on the same unique constraints as the SQL backend:
``Prefer: resolution=ignore-duplicates`` is PostgREST's ``ON CONFLICT DO NOTHING``, and
a conflicting insert returns no row, so the stored row is read back. PostgREST has no
multi-statement transactions, so an append is three idempotent requests (conversation,
message, ``updated_at``); a failure between them can leave an empty conversation or a
stale ``updated_at``, never a partial message. The owner is checked after the
conversation is found and before the message is written. PostgREST reports Postgres
errors by SQLSTATE: class 22 and 23 (and an unparsable body, PGRST102) are
:class:`InvalidData`. Not exercised against a live Supabase here: this repository's
tests have no network.

Its REST requests are database calls, and their client spans say so
(:func:`name_rest_span`): ``db.system.name`` ``supabase``, the table as
``db.collection.name``, the PostgREST verb as ``db.operation.name`` (``select``,
``insert``, ``upsert``, ``update``, ``delete``) and the span named after both
(``select conversations``), as the database conventions name spans; not ``GET`` or
``POST``, which dashboards would take for any other HTTP (or Redis) call.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

import httpx
from opentelemetry.instrumentation.httpx import RequestInfo
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.propagate import get_global_textmap
from opentelemetry.semconv.attributes.db_attributes import (
    DB_COLLECTION_NAME,
    DB_OPERATION_NAME,
    DB_SYSTEM_NAME,
)
from opentelemetry.trace import Span
from postgrest import APIError, APIResponse
from supabase import AsyncClient, AsyncClientOptions, acreate_client

from storage_adapter.checks import is_tracing_key
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
    as_utc,
    is_same_request,
    iso_utc,
)

logger = logging.getLogger(__name__)

CONVERSATION_COLUMNS = "id,continuation_id,client_id,title,metadata,created_at,updated_at"
MESSAGE_COLUMNS = "id,conversation_id,role,content,metadata,idempotency_key,created_at"
# PostgREST: unknown table (PGRST205, older: 42P01), unknown column (42703, PGRST204).
_SCHEMA_ERROR_CODES = frozenset({"PGRST205", "42P01", "42703", "PGRST204"})
# SQLSTATE classes about the data (22 data exception, 23 integrity), and PostgREST's
# "invalid request body".
_DATA_ERROR_CLASSES = ("22", "23")
_DATA_ERROR_CODES = frozenset({"PGRST102"})
SCHEMA_HINT = (
    "create them with services/storage_adapter/schema.sql "
    "(run it again to upgrade tables made for an older adapter)"
)


def conversation_row(
    continuation_id: str, client_id: str, title: str | None, metadata: JsonObject, now: datetime
) -> dict[str, Any]:
    stamp = iso_utc(now)
    return {
        "continuation_id": continuation_id,
        "client_id": client_id,
        "title": title,
        "metadata": metadata,
        "created_at": stamp,
        "updated_at": stamp,
    }


def message_row(conversation_id: int, message: NewMessage, now: datetime) -> dict[str, Any]:
    return {
        "conversation_id": conversation_id,
        "role": message.role,
        "content": message.content,
        "metadata": message.metadata,
        "idempotency_key": message.idempotency_key,
        "created_at": iso_utc(now),
    }


DB_SYSTEM = "supabase"
REST_PREFIX = "/rest/v1/"
# PostgREST's verbs by HTTP method; a POST with `Prefer: resolution=…` is an upsert.
_OPERATIONS = {"GET": "select", "HEAD": "select", "POST": "insert", "PATCH": "update"}
_OPERATIONS |= {"PUT": "upsert", "DELETE": "delete"}


def rest_operation(method: str, path: str, prefer: str | None) -> tuple[str, str | None]:
    """(db.operation.name, db.collection.name or None) of a PostgREST request."""
    operation = _OPERATIONS.get(method.upper(), method.lower())
    if operation == "insert" and prefer is not None and "resolution=" in prefer:
        operation = "upsert"
    table: str | None = None
    if path.startswith(REST_PREFIX):
        table = path[len(REST_PREFIX) :].split("/", 1)[0] or None
    return operation, table


async def name_rest_span(span: Span, request: RequestInfo) -> None:
    """httpx request hook (async: the instrumentation ignores a sync hook on an async
    client): the Supabase REST call's span as a database call. Never raises into the
    request (a hook's failure must not fail the call)."""
    try:
        if not span.is_recording():
            return
        method = request.method.decode("ascii", "replace")
        url = request.url
        if isinstance(url, httpx.URL):
            path = url.path
        else:  # httpx's raw form: the target holds the query too
            path = url[3].decode("utf-8", "replace").split("?", 1)[0]
        prefer = request.headers.get("prefer") if request.headers is not None else None
        operation, table = rest_operation(method, path, prefer)
        attributes = {DB_SYSTEM_NAME: DB_SYSTEM, DB_OPERATION_NAME: operation}
        if table is not None:
            attributes[DB_COLLECTION_NAME] = table
        span.set_attributes(attributes)
        span.update_name(f"{operation} {table}" if table else operation)
    except Exception:  # a hook never fails the request it describes
        logger.debug("could not name a Supabase span", exc_info=True)


class NoPropagationTransport(httpx.AsyncHTTPTransport):
    """Removes trace context and baggage from requests as they leave.

    Supabase is a third party: our trace ids and whatever callers put into baggage
    stay with us. The httpx instrumentation wraps this transport and injects the
    headers just before calling it, so they are removed here, after; the client
    spans are recorded all the same.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        fields = {name.lower() for name in get_global_textmap().fields}
        for name in [n for n in request.headers if n.lower() in fields or is_tracing_key(n)]:
            del request.headers[name]
        return await super().handle_async_request(request)


def _mapping(row: object) -> Mapping[str, Any]:
    if not isinstance(row, Mapping):
        raise StoreUnavailable("read", f"unexpected PostgREST row type {type(row).__name__}")
    return row


def parse_conversation(value: object) -> Conversation:
    row = _mapping(value)
    return Conversation(
        id=int(row["id"]),
        continuation_id=str(row["continuation_id"]),
        client_id=str(row["client_id"]),
        title=row.get("title"),
        metadata=dict(row.get("metadata") or {}),
        created_at=as_utc(datetime.fromisoformat(row["created_at"])),
        updated_at=as_utc(datetime.fromisoformat(row["updated_at"])),
    )


def parse_message(value: object) -> Message:
    row = _mapping(value)
    return Message.from_json({**row, "metadata": row.get("metadata") or {}})


def translate_error(operation: str, exc: Exception) -> StoreUnavailable | InvalidData:
    """PostgREST and transport errors as the store's errors (codes only, no bodies)."""
    if isinstance(exc, APIError):
        code = exc.code or ""
        if code in _SCHEMA_ERROR_CODES:
            return SchemaError(f"Supabase tables or columns missing ({code}); {SCHEMA_HINT}")
        if code[:2] in _DATA_ERROR_CLASSES or code in _DATA_ERROR_CODES:
            return InvalidData(operation, f"PostgREST error {code}")
        return StoreUnavailable(operation, f"PostgREST error {code or 'unknown'}")
    if isinstance(exc, UnicodeError):
        return InvalidData(operation, f"{type(exc).__name__} (text that cannot be encoded)")
    return StoreUnavailable(operation, type(exc).__name__)


class SupabaseStore:
    backend = "supabase"

    def __init__(self, client: AsyncClient, http: httpx.AsyncClient) -> None:
        self._client = client
        self._http = http

    @classmethod
    async def connect(
        cls, url: str, key: str, *, timeout_s: float, http: httpx.AsyncClient | None = None
    ) -> SupabaseStore:
        """No network here: supabase-py connects on the first request."""
        http = http or httpx.AsyncClient(timeout=timeout_s)
        options = AsyncClientOptions(
            httpx_client=http,
            auto_refresh_token=False,
            persist_session=False,
            # Retries (up to 7 s of sleeping) belong to the caller, not to a read.
            postgrest_client_retry=False,
        )
        client = await acreate_client(url, key, options=options)
        return cls(client, http)

    @contextlib.asynccontextmanager
    async def _errors(self, operation: str) -> AsyncIterator[None]:
        try:
            yield
        except (APIError, httpx.HTTPError, OSError, UnicodeError) as exc:
            raise translate_error(operation, exc) from exc

    async def initialize(self) -> None:
        async with self._errors("initialize"):
            await (
                self._client.table("conversations").select(CONVERSATION_COLUMNS).limit(1).execute()
            )
            await self._client.table("messages").select(MESSAGE_COLUMNS).limit(1).execute()

    async def ping(self) -> None:
        # Health probes run every few seconds: no spans for them.
        with suppress_instrumentation():
            async with self._errors("ping"):
                await self._client.table("conversations").select("id").limit(1).execute()

    async def get_or_create_conversation(
        self,
        continuation_id: str,
        client_id: str,
        title: str | None,
        metadata: JsonObject,
        now: datetime,
    ) -> tuple[Conversation, bool]:
        async with self._errors("create_conversation"):
            return await self._get_or_create(continuation_id, client_id, title, metadata, now)

    async def _get_or_create(
        self,
        continuation_id: str,
        client_id: str,
        title: str | None,
        metadata: JsonObject,
        now: datetime,
    ) -> tuple[Conversation, bool]:
        inserted = (
            await self._client.table("conversations")
            .upsert(
                conversation_row(continuation_id, client_id, title, metadata, now),
                on_conflict="continuation_id",
                ignore_duplicates=True,
            )
            .execute()
        )
        if inserted.data:
            return parse_conversation(inserted.data[0]), True
        found = await self._find_conversation(continuation_id)
        if found is None:
            raise StoreUnavailable("create_conversation", "conversation vanished after insert")
        return found, False

    async def _find_conversation(self, continuation_id: str) -> Conversation | None:
        result = (
            await self._client.table("conversations")
            .select(CONVERSATION_COLUMNS)
            .eq("continuation_id", continuation_id)
            .limit(1)
            .execute()
        )
        return parse_conversation(result.data[0]) if result.data else None

    async def load_history(self, continuation_id: str, limit: int) -> History | None:
        async with self._errors("get_conversation"):
            conversation = await self._find_conversation(continuation_id)
            if conversation is None:
                return None
            result = (
                await self._client.table("messages")
                .select(MESSAGE_COLUMNS)
                .eq("conversation_id", conversation.id)
                .order("id", desc=True)
                .limit(limit + 1)
                .execute()
            )
        rows = result.data
        newest_first = [parse_message(r) for r in rows[:limit]]
        return History(conversation, tuple(reversed(newest_first)), len(rows) <= limit)

    async def append_message(
        self, continuation_id: str, client_id: str, message: NewMessage, now: datetime
    ) -> AppendResult:
        sent = False
        try:
            async with self._errors("append_message"):
                conversation, _ = await self._get_or_create(
                    continuation_id, client_id, None, {}, now
                )
                if conversation.client_id != client_id:
                    raise ConversationNotFound(continuation_id)
                sent = True
                inserted = await self._insert_message(conversation.id, message, now)
                if not inserted.data:
                    existing = await self._stored_message(conversation.id, message)
                    return AppendResult(conversation, existing, created=False)
                await (
                    self._client.table("conversations")
                    .update({"updated_at": iso_utc(now)})
                    .eq("id", conversation.id)
                    .execute()
                )
        except StoreUnavailable as exc:
            unsent = isinstance(exc.__cause__, httpx.ConnectError | httpx.ConnectTimeout)
            if sent and not unsent:
                # The insert went out (or the update after it failed): it may be stored.
                raise StoreUnavailable(exc.operation, exc.reason, in_doubt=True) from exc
            raise
        updated = replace(conversation, updated_at=now)
        return AppendResult(updated, parse_message(inserted.data[0]), created=True)

    async def _insert_message(
        self, conversation_id: int, message: NewMessage, now: datetime
    ) -> APIResponse:
        return await (
            self._client.table("messages")
            .upsert(
                message_row(conversation_id, message, now),
                on_conflict="idempotency_key",
                ignore_duplicates=True,
            )
            .execute()
        )

    async def _stored_message(self, conversation_id: int, message: NewMessage) -> Message:
        """The message already stored under ``message``'s key (a replay), or
        IdempotencyConflict when that key holds a different message."""
        found = (
            await self._client.table("messages")
            .select(MESSAGE_COLUMNS)
            .eq("idempotency_key", message.idempotency_key)
            .limit(1)
            .execute()
        )
        if not found.data:
            raise StoreUnavailable("append_message", "message vanished after insert")
        existing = parse_message(found.data[0])
        if not is_same_request(existing, conversation_id, message):
            raise IdempotencyConflict(message.idempotency_key)
        return existing

    async def close(self) -> None:
        await self._http.aclose()
