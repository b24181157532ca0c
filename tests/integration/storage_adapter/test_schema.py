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
    assert await sql_backend.scalar("SELECT max(version) FROM schema_version") == 2


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


# The schema as version 1 of the adapter left it (before conversations had owners).
V1_POSTGRES = """
CREATE TABLE schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL);
CREATE TABLE conversations (
    id bigserial PRIMARY KEY, continuation_id varchar(128) NOT NULL UNIQUE, title text,
    metadata jsonb NOT NULL, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
CREATE TABLE messages (
    id bigserial PRIMARY KEY,
    conversation_id bigint NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role varchar(16) NOT NULL, content text NOT NULL, metadata jsonb NOT NULL,
    idempotency_key varchar(255) NOT NULL UNIQUE, created_at timestamptz NOT NULL,
    CONSTRAINT messages_role_check CHECK (role IN ('user', 'assistant', 'system', 'tool')));
CREATE INDEX messages_conversation_id_id_idx ON messages (conversation_id, id);
INSERT INTO schema_version VALUES (1, now());
"""
V1_SQLITE = """
CREATE TABLE conversations (
    id INTEGER NOT NULL, continuation_id VARCHAR(128) NOT NULL, title TEXT,
    metadata JSON NOT NULL, created_at VARCHAR(32) NOT NULL, updated_at VARCHAR(32) NOT NULL,
    PRIMARY KEY (id), UNIQUE (continuation_id));
CREATE TABLE schema_version (
    version INTEGER NOT NULL, applied_at VARCHAR(32) NOT NULL, PRIMARY KEY (version));
CREATE TABLE messages (
    id INTEGER NOT NULL, conversation_id INTEGER NOT NULL, role VARCHAR(16) NOT NULL,
    content TEXT NOT NULL, metadata JSON NOT NULL, idempotency_key VARCHAR(255) NOT NULL,
    created_at VARCHAR(32) NOT NULL, PRIMARY KEY (id),
    CONSTRAINT messages_role_check CHECK (role IN ('user', 'assistant', 'system', 'tool')),
    FOREIGN KEY(conversation_id) REFERENCES conversations (id) ON DELETE CASCADE,
    UNIQUE (idempotency_key));
CREATE INDEX messages_conversation_id_id_idx ON messages (conversation_id, id);
INSERT INTO schema_version VALUES (1, '2025-01-02T03:04:05.000000+00:00');
"""
V1_DATA = """
INSERT INTO conversations (id, continuation_id, title, metadata, created_at, updated_at)
    VALUES (1, 'old-conv', 'Old', '{}', '{t}', '{t}');
INSERT INTO messages (conversation_id, role, content, metadata, idempotency_key, created_at)
    VALUES (1, 'user', 'kept', '{}', 'old-key', '{t}');
""".replace("{t}", "2025-01-02T03:04:05.000000+00:00")


async def _run_script(backend: SqlBackend, script: str) -> None:
    if backend.name == "postgresql":
        conn = await asyncpg.connect(backend.settings["EXAI_DATABASE_URL"])
        try:
            await conn.execute(script)
        finally:
            await conn.close()
        return
    import aiosqlite

    path = Path(backend.settings["EXAI_SQLITE_PATH"])
    path.parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(path) as db:
        await db.executescript(script)
        await db.commit()


async def test_a_version_1_database_is_migrated_in_place(
    captured: CapturedTelemetry, sql_backend: SqlBackend
) -> None:
    v1 = V1_POSTGRES if sql_backend.name == "postgresql" else V1_SQLITE
    await _run_script(sql_backend, v1 + V1_DATA)
    settings = make_settings(**sql_backend.settings)
    for run in range(2):  # the migration runs once; a restart finds it done
        async with running_adapter(captured, settings) as adapter:
            assert (await adapter.client.get("/health/ready")).status_code == 200
            old = await adapter.client.get("/v1/conversations/old-conv")
            assert old.status_code == 200
            expected = ["kept"] if run == 0 else ["kept", "new"]
            assert [m["content"] for m in old.json()["messages"]] == expected
            other = await adapter.client.get(
                "/v1/conversations/old-conv", headers={"X-EXAI-Client-ID": "someone"}
            )
            assert other.status_code == 404
            if run == 0:
                added = await adapter.client.post(
                    "/v1/conversations/old-conv/messages", json=message_body("new")
                )
                assert added.status_code == 201
    assert await sql_backend.scalar("SELECT max(version) FROM schema_version") == 2
    assert await sql_backend.scalar("SELECT count(*) FROM schema_version") == 2
    owner = await sql_backend.scalar("SELECT client_id FROM conversations WHERE id = 1")
    assert owner == "default"


async def test_schema_sql_upgrades_a_version_1_database(
    captured: CapturedTelemetry, postgres_srv: PostgresServer
) -> None:
    """Supabase: the operator runs schema.sql again; it adds what version 2 needs."""
    by_hand = await create_database(postgres_srv)
    conn = await asyncpg.connect(by_hand)
    try:
        await conn.execute(V1_POSTGRES + V1_DATA)
        await conn.execute(SCHEMA_SQL.read_text())
        await conn.execute(SCHEMA_SQL.read_text())  # and again: idempotent
        owner = await conn.fetchval("SELECT client_id FROM conversations WHERE id = 1")
        versions = await conn.fetchval("SELECT max(version) FROM schema_version")
    finally:
        await conn.close()
    assert owner == "default" and versions == 2
    by_adapter = await create_database(postgres_srv)
    async with running_adapter(captured, make_settings(EXAI_DATABASE_URL=by_adapter)):
        pass
    assert await _columns(by_hand) == await _columns(by_adapter)
