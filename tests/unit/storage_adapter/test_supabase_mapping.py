"""Supabase backend: what can be tested without a Supabase.

Row mapping, error translation, and that the client is built without network access.
Requests against a live Supabase/PostgREST are NOT tested here (no network; no fake
server on purpose).
"""

from __future__ import annotations

import httpx
from postgrest import APIError

from storage_adapter.errors import InvalidData, SchemaError, StoreUnavailable
from storage_adapter.models import NewMessage
from storage_adapter.store.supabase import (
    CONVERSATION_COLUMNS,
    SupabaseStore,
    conversation_row,
    message_row,
    parse_conversation,
    parse_message,
    translate_error,
)
from tests.support.servers import free_port
from tests.unit.storage_adapter.helpers import T0


def test_rows_carry_utc_iso_timestamps_and_no_ids() -> None:
    row = conversation_row("c-1", "default", "t", {"a": 1}, T0)
    assert row == {
        "continuation_id": "c-1",
        "client_id": "default",
        "title": "t",
        "metadata": {"a": 1},
        "created_at": "2025-01-02T03:04:05.678901+00:00",
        "updated_at": "2025-01-02T03:04:05.678901+00:00",
    }
    msg = message_row(4, NewMessage("tool", "out", "k-1", {"m": True}), T0)
    assert msg == {
        "conversation_id": 4,
        "role": "tool",
        "content": "out",
        "metadata": {"m": True},
        "idempotency_key": "k-1",
        "created_at": "2025-01-02T03:04:05.678901+00:00",
    }


def test_postgrest_rows_parse_to_records() -> None:
    conversation = parse_conversation(
        {
            "id": 3,
            "continuation_id": "c-1",
            "client_id": "default",
            "title": None,
            "metadata": None,
            "created_at": "2025-01-02T03:04:05.678901+00:00",
            "updated_at": "2025-01-02T05:04:05+02:00",
        }
    )
    assert conversation.metadata == {} and conversation.updated_at.utcoffset() is not None
    assert conversation.updated_at == T0.replace(microsecond=0)
    message = parse_message(
        {
            "id": 9,
            "conversation_id": 3,
            "role": "assistant",
            "content": "hi",
            "metadata": {},
            "idempotency_key": "k",
            "created_at": "2025-01-02T03:04:05.678901+00:00",
        }
    )
    assert (message.id, message.role, message.created_at) == (9, "assistant", T0)


def test_missing_tables_say_how_to_create_them() -> None:
    for code in ("PGRST205", "42P01", "42703"):
        error = translate_error("initialize", APIError({"code": code, "message": "nope"}))
        assert isinstance(error, SchemaError)
        assert "schema.sql" in error.reason
    other = translate_error("ping", APIError({"code": "PGRST301", "message": "JWT expired"}))
    assert type(other) is StoreUnavailable and "PGRST301" in other.reason
    network = translate_error("ping", httpx.ConnectError("refused"))
    assert network.reason == "ConnectError"


async def test_client_builds_offline_and_fails_clearly_when_unreachable() -> None:
    store = await SupabaseStore.connect(
        f"http://127.0.0.1:{free_port()}", "sb-test-key-123456", timeout_s=1
    )
    try:
        try:
            await store.initialize()
        except StoreUnavailable as exc:
            assert exc.operation == "initialize" and exc.reason == "ConnectError"
        else:
            raise AssertionError("initialize succeeded against a closed port")
    finally:
        await store.close()


def test_data_errors_are_the_requests_fault_not_an_outage() -> None:
    for code in ("22021", "22P02", "22P05", "23505", "23514", "PGRST102"):
        error = translate_error("append_message", APIError({"code": code, "message": "no"}))
        assert isinstance(error, InvalidData), code
        assert code in error.reason and "no" not in error.reason.split()
    for code in ("08006", "57P01", "PGRST301", "53300"):
        error = translate_error("append_message", APIError({"code": code, "message": "no"}))
        assert type(error) is StoreUnavailable, code
    encoding = translate_error("append_message", UnicodeEncodeError("utf-8", "\ud800", 0, 1, "x"))
    assert isinstance(encoding, InvalidData)


def test_rows_carry_the_owner() -> None:
    row = conversation_row("c-1", "alice", None, {}, T0)
    assert row["client_id"] == "alice"
    assert "client_id" in CONVERSATION_COLUMNS.split(",")
    parsed = parse_conversation({**row, "id": 1, "metadata": {}, "created_at": row["created_at"]})
    assert parsed.client_id == "alice"
