"""A real storage-adapter on 127.0.0.1:<free port> over real SQLite, Postgres and Redis."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from storage_adapter.app import create_app
from storage_adapter.settings import StorageSettings
from tests.support.asgi import serve_app
from tests.support.internal_auth import STORAGE_TOKEN, bearer
from tests.support.servers import PostgresServer, RedisServer
from tests.support.telemetry import CapturedTelemetry, metric_points

# Stretch every timing bound on a slow machine: EXAI_TEST_TIME_SCALE=3 pytest …
TIME_SCALE = float(os.environ.get("EXAI_TEST_TIME_SCALE", "1"))


def make_settings(**values: Any) -> StorageSettings:
    """Settings from explicit values only: no `.env`, no stray backend variables."""
    base: dict[str, Any] = {
        "EXAI_DATABASE_URL": None,
        "SUPABASE_URL": None,
        "SUPABASE_KEY": None,
        "REDIS_URL": None,
        "EXAI_STORAGE_TOKEN": STORAGE_TOKEN,
        "EXAI_REDIS_TIMEOUT_S": 0.3 * TIME_SCALE,
        "EXAI_CACHE_RETRY_S": 0.2 * TIME_SCALE,
    }
    return StorageSettings(_env_file=None, **{**base, **values})


@dataclass
class Adapter:
    client: httpx.AsyncClient
    reader: InMemoryMetricReader
    app: FastAPI

    def counter(self, name: str, **attributes: str) -> int:
        return sum(
            point.value
            for attrs, point in metric_points(self.reader, name)
            if all(attrs.get(k) == v for k, v in attributes.items())
        )

    def gauge(self, name: str, **attributes: str) -> int | None:
        for attrs, point in metric_points(self.reader, name):
            if all(attrs.get(k) == v for k, v in attributes.items()):
                return int(point.value)
        return None


@contextlib.asynccontextmanager
async def running_adapter(
    captured: CapturedTelemetry, settings: StorageSettings
) -> AsyncIterator[Adapter]:
    telemetry, reader = captured.build("storage-adapter", settings)
    app = create_app(settings, telemetry)
    async with (
        serve_app(app) as url,
        # Sends the internal token, as the gateway does.
        httpx.AsyncClient(
            base_url=url, headers=bearer(STORAGE_TOKEN), timeout=10 * TIME_SCALE
        ) as client,
    ):
        yield Adapter(client, reader, app)


async def create_database(server: PostgresServer) -> str:
    """A fresh, empty database on the session's Postgres; its URL."""
    name = f"sa_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(server.dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return server.dsn.rsplit("/", 1)[0] + f"/{name}"


@dataclass
class SqlBackend:
    name: str
    """`sqlite` or `postgresql`: also the durable component's name in /health."""
    settings: dict[str, Any]

    async def scalar(self, query: str, *args: Any) -> Any:
        """Run one read query directly against the backing database."""
        if self.name == "postgresql":
            conn = await asyncpg.connect(self.settings["EXAI_DATABASE_URL"])
            try:
                return await conn.fetchval(query, *args)
            finally:
                await conn.close()
        import aiosqlite

        async with aiosqlite.connect(self.settings["EXAI_SQLITE_PATH"]) as db:
            cursor = await db.execute(query.replace("$1", "?"), args)
            row = await cursor.fetchone()
            return None if row is None else row[0]


@pytest.fixture(params=["sqlite", "postgresql"])
async def sql_backend(request: pytest.FixtureRequest, tmp_path: Path) -> SqlBackend:
    if request.param == "sqlite":
        # The default backend, configured the way an operator would: a path whose
        # directory does not exist yet.
        return SqlBackend("sqlite", {"EXAI_SQLITE_PATH": str(tmp_path / "var" / "exai.db")})
    server: PostgresServer = request.getfixturevalue("postgres_srv")
    return SqlBackend("postgresql", {"EXAI_DATABASE_URL": await create_database(server)})


@pytest.fixture(params=["memory", "redis"])
def cache_settings(request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings for each cache: in-process memory (no REDIS_URL), then real Redis."""
    if request.param == "memory":
        return {}
    return {"REDIS_URL": request.getfixturevalue("redis_url")}


@pytest.fixture
async def redis_url(redis_srv: RedisServer) -> AsyncIterator[str]:
    """The session Redis, emptied, and running again after the test whatever it did."""
    if redis_srv.process.poll() is not None:
        redis_srv.start_again()
    client = aioredis.Redis.from_url(redis_srv.url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()
    yield redis_srv.url
    if redis_srv.process.poll() is not None:
        redis_srv.start_again()


@contextlib.contextmanager
def redis_stopped(redis_srv: RedisServer) -> Iterator[None]:
    redis_srv.stop()
    try:
        yield
    finally:
        if redis_srv.process.poll() is not None:
            redis_srv.start_again()


async def redis_dump(url: str) -> str:
    """Every key and value in Redis as one string (to search for content)."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        parts: list[str] = []
        async for key in client.scan_iter():
            kind = await client.type(key)
            if kind == "string":
                parts.append(f"{key}={await client.get(key)}")
            elif kind == "hash":
                parts.append(f"{key}={await client.hgetall(key)}")
            elif kind == "zset":
                parts.append(f"{key}={await client.zrange(key, 0, -1)}")
        return "\n".join(parts)
    finally:
        await client.aclose()


def message_body(content: str, key: str | None = None, role: str = "user") -> dict[str, Any]:
    return {"role": role, "content": content, "idempotency_key": key or uuid.uuid4().hex}
