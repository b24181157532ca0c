"""Schema created at start-up, idempotently; `schema.sql` (for Supabase) matches it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

import storage_adapter
from storage_adapter.settings import async_database_url
from storage_adapter.store.sql import SqlStore, create_engine
from tests.integration.storage_adapter.conftest import (
    SqlBackend,
    create_database,
    make_settings,
    message_body,
    running_adapter,
)
from tests.support.servers import PostgresServer
from tests.support.telemetry import CapturedTelemetry

pytestmark = pytest.mark.integration

SCHEMA_SQL = Path(storage_adapter.__file__).parent / "schema.sql"


async def test_restarts_keep_data_and_schema(
    captured: CapturedTelemetry, sql_backend: SqlBackend
) -> None:
    settings = make_settings(**sql_backend.settings)
    for run in range(3):
        async with running_adapter(captured, settings) as adapter:
            assert (await adapter.client.get("/health/ready")).status_code == 200
            stored = await adapter.client.post(
                "/v1/conversations/restarts/messages", json=message_body(f"run{run}")
            )
            assert stored.status_code == 201
            history = (await adapter.client.get("/v1/conversations/restarts")).json()
            assert [m["content"] for m in history["messages"]] == [
                f"run{i}" for i in range(run + 1)
            ]
    assert await sql_backend.scalar("SELECT count(*) FROM schema_version") == 1
    assert await sql_backend.scalar("SELECT max(version) FROM schema_version") == 1


async def test_adapters_starting_together_both_get_a_schema(
    sql_backend: SqlBackend,
) -> None:
    settings = make_settings(**sql_backend.settings)
    stores = [
        SqlStore(create_engine(settings.sqlalchemy_url(), timeout_s=5, pool_size=2))
        for _ in range(3)
    ]
    try:
        await asyncio.gather(*(store.initialize() for store in stores))
        await asyncio.gather(*(store.ping() for store in stores))
    finally:
        for store in stores:
            await store.close()
    assert await sql_backend.scalar("SELECT count(*) FROM schema_version") == 1


async def test_a_newer_schema_is_refused(
    captured: CapturedTelemetry, postgres_srv: PostgresServer
) -> None:
    database = await create_database(postgres_srv)
    settings = make_settings(EXAI_DATABASE_URL=database)
    async with running_adapter(captured, settings):
        pass
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("INSERT INTO schema_version VALUES (99, now())")
    finally:
        await conn.close()
    async with running_adapter(captured, settings) as adapter:
        ready = await adapter.client.get("/health/ready")
        assert ready.status_code == 503
        assert "newer than this adapter" in ready.json()["components"]["postgresql"]["error"]


async def _columns(url: str) -> list[tuple[str, str, str, str]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT table_name, column_name, data_type, is_nullable "
            "FROM information_schema.columns WHERE table_schema = 'public' "
            "ORDER BY table_name, column_name"
        )
        constraints = await conn.fetch(
            "SELECT conrelid::regclass::text, contype, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE connamespace = 'public'::regnamespace "
            "ORDER BY 1, 2, 3"
        )
    finally:
        await conn.close()
    return [tuple(r) for r in rows] + [(*tuple(c), "") for c in constraints]


async def test_schema_sql_creates_what_the_adapter_creates(
    captured: CapturedTelemetry, postgres_srv: PostgresServer
) -> None:
    by_hand = await create_database(postgres_srv)
    conn = await asyncpg.connect(by_hand)
    try:
        await conn.execute(SCHEMA_SQL.read_text())
    finally:
        await conn.close()
    by_adapter = await create_database(postgres_srv)
    async with running_adapter(captured, make_settings(EXAI_DATABASE_URL=by_adapter)):
        pass
    assert await _columns(by_hand) == await _columns(by_adapter)

    # And the adapter runs on the hand-made schema (what a Supabase project holds).
    async with running_adapter(captured, make_settings(EXAI_DATABASE_URL=by_hand)) as adapter:
        stored = await adapter.client.post(
            "/v1/conversations/manual/messages", json=message_body("x")
        )
        assert stored.status_code == 201
    assert async_database_url(by_hand).startswith("postgresql+asyncpg://")
