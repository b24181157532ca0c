"""A client's bad data is the client's mistake (422), never an outage (503).

Postgres refuses NUL characters, lone surrogates and non-finite JSON numbers with
SQLSTATE class 22; SQLite cannot encode a lone surrogate. The API refuses them before
the database, and a database that refuses data anyway (the backstop) still answers 422
and leaves ``durable_up``, readiness and the failure counter alone.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from storage_adapter.cache.guard import CacheGuard
from storage_adapter.cache.memory import MemoryCache
from storage_adapter.errors import InvalidData
from storage_adapter.models import NewMessage, utc_now
from storage_adapter.service import ConversationService
from storage_adapter.store.sql import SqlStore, create_engine
from storage_adapter.telemetry import Dependencies, StorageMetrics
from tests.integration.storage_adapter.conftest import (
    Adapter,
    SqlBackend,
    make_settings,
    message_body,
    running_adapter,
)
from tests.support.telemetry import CapturedTelemetry, metric_points

pytestmark = pytest.mark.integration

DEEP = 40


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# Raw JSON texts: NaN and Infinity are what Python's (and so FastAPI's) JSON parser
# accepts and a JSON encoder never produces.
BAD_MESSAGES = {
    "nul in content": (r'{"content": "a\u0000b"}', "body.content"),
    "lone surrogate in content": (r'{"content": "a\ud800b"}', "body.content"),
    "lone low surrogate in content": (r'{"content": "\udc00"}', "body.content"),
    "NaN in metadata": ('{"metadata": {"score": NaN}}', "body.metadata"),
    "Infinity in metadata": ('{"metadata": {"score": Infinity}}', "body.metadata"),
    "-Infinity in metadata": ('{"metadata": {"n": [-Infinity]}}', "body.metadata"),
    "overflowing number in metadata": ('{"metadata": {"n": 1e400}}', "body.metadata"),
    "nul in a metadata key": (r'{"metadata": {"a\u0000": 1}}', "body.metadata"),
    "nul in a nested metadata value": (r'{"metadata": {"a": {"b": ["\u0000"]}}}', "body.metadata"),
    "surrogate in a metadata key": (r'{"metadata": {"\udfff": 1}}', "body.metadata"),
    "metadata nested too deep": (json.dumps({"metadata": {"a": _deep(DEEP)}}), "body.metadata"),
}


def _merged(patch: str, key: str) -> str:
    body = {"role": "user", "content": "fine", "idempotency_key": key}
    # Splice the raw patch in as text so that NaN, Infinity and lone surrogates survive.
    head = json.dumps(body)[:-1]
    return head + ", " + patch.strip()[1:]


def durable_up(adapter: Adapter) -> int | None:
    return adapter.gauge("exai.storage.dependency.up", **{"exai.dependency": "durable"})


def durable_errors(adapter: Adapter) -> int:
    return adapter.counter("exai.storage.durable.errors")


@pytest.mark.parametrize("case", sorted(BAD_MESSAGES))
async def test_bad_message_data_is_422_and_never_an_outage(
    captured: CapturedTelemetry, sql_backend: SqlBackend, case: str
) -> None:
    patch, where = BAD_MESSAGES[case]
    async with running_adapter(captured, make_settings(**sql_backend.settings)) as adapter:
        client = adapter.client
        ok = await client.post("/v1/conversations/bad-data/messages", json=message_body("first"))
        assert ok.status_code == 201
        assert durable_up(adapter) == 1

        bad = await client.post(
            "/v1/conversations/bad-data/messages",
            content=_merged(patch, "bad-key"),
            headers={"content-type": "application/json"},
        )
        assert bad.status_code == 422, bad.text
        error = bad.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert where in [d["loc"] for d in error["details"]]
        assert "\\u0000" not in bad.text and "NaN" not in bad.text  # input never echoed

        assert durable_up(adapter) == 1
        assert durable_errors(adapter) == 0
        assert (await client.get("/health/ready")).status_code == 200
        history = (await client.get("/v1/conversations/bad-data")).json()
        assert [m["content"] for m in history["messages"]] == ["first"]
    assert (
        await sql_backend.scalar(
            "SELECT count(*) FROM messages WHERE idempotency_key = $1", "bad-key"
        )
        == 0
    )


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (r'{"continuation_id": "bad-title", "title": "a\u0000b"}', "body.title"),
        (r'{"continuation_id": "bad-title", "title": "\ud800"}', "body.title"),
        ('{"continuation_id": "bad-title", "metadata": {"x": NaN}}', "body.metadata"),
        (r'{"continuation_id": "bad-title", "metadata": {"x": "\u0000"}}', "body.metadata"),
    ],
)
async def test_bad_conversation_data_is_422(
    captured: CapturedTelemetry, sql_backend: SqlBackend, body: str, where: str
) -> None:
    async with running_adapter(captured, make_settings(**sql_backend.settings)) as adapter:
        bad = await adapter.client.post(
            "/v1/conversations", content=body, headers={"content-type": "application/json"}
        )
        assert bad.status_code == 422, bad.text
        assert where in [d["loc"] for d in bad.json()["error"]["details"]]
        assert (await adapter.client.get("/v1/conversations/bad-title")).status_code == 404
        assert durable_up(adapter) == 1 and durable_errors(adapter) == 0


async def test_good_unicode_and_numbers_are_kept(
    captured: CapturedTelemetry, sql_backend: SqlBackend
) -> None:
    """What the checks must let through: astral characters (a surrogate *pair* in JSON),
    big integers, floats, nesting up to the limit."""
    metadata = {"emoji": "😀", "big": 10**30, "f": -0.25, "deep": _deep(20), "none": None}
    async with running_adapter(captured, make_settings(**sql_backend.settings)) as adapter:
        stored = await adapter.client.post(
            "/v1/conversations/good-data/messages",
            content=_merged(
                json.dumps({"content": "tab\there \U0001f600 \\", "metadata": metadata}),
                "good-key",
            ),
            headers={"content-type": "application/json"},
        )
        assert stored.status_code == 201, stored.text
        history = (await adapter.client.get("/v1/conversations/good-data")).json()
        assert history["messages"][0]["content"] == "tab\there \U0001f600 \\"
        assert history["messages"][0]["metadata"] == metadata


def _service(store: SqlStore) -> tuple[ConversationService, Dependencies, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    dependencies = Dependencies()
    metrics = StorageMetrics(MeterProvider(metric_readers=[reader]).get_meter("t"), dependencies)
    cache = MemoryCache(ttl_s=60, max_turns=10, max_conversations=10, max_chars=10**6)
    guard = CacheGuard(cache, metrics, dependencies, retry_s=1)
    service = ConversationService(store, guard, metrics, dependencies, cache_max_turns=10)
    return service, dependencies, reader


# What gets past the API only by a bug: the database's own refusal is still the client's.
BACKSTOP = {
    "postgresql": [
        NewMessage("user", "a\x00b", "k-nul"),
        NewMessage("user", "a\ud800b", "k-surrogate"),
        NewMessage("user", "x", "k-nan", {"a": float("nan")}),
        NewMessage("user", "x", "k-nul-key", {"a\x00": 1}),
    ],
    "sqlite": [
        NewMessage("user", "a\ud800b", "k-surrogate"),
    ],
}


async def test_database_data_errors_are_invalid_data_not_an_outage(
    sql_backend: SqlBackend,
) -> None:
    settings = make_settings(**sql_backend.settings)
    store = SqlStore(create_engine(settings.sqlalchemy_url(), timeout_s=5, pool_size=2))
    service, dependencies, reader = _service(store)
    try:
        await service.start()
        assert dependencies.durable_up
        for message in BACKSTOP[sql_backend.name]:
            with pytest.raises(InvalidData) as caught:
                await service.append_message("backstop", "default", message)
            assert message.content not in str(caught.value)
            assert dependencies.durable_up, message.idempotency_key
        with pytest.raises(InvalidData):
            await store.get_or_create_conversation(
                "backstop-title", "default", "\ud800", {}, utc_now()
            )
        assert dependencies.durable_up
        assert not [p for _, p in metric_points(reader, "exai.storage.durable.errors") if p.value]
        assert (await service.durable_health()).up
    finally:
        await service.close()
    assert await sql_backend.scalar("SELECT count(*) FROM messages") == 0


async def _refuse_forbidden_content(backend: SqlBackend) -> None:
    """A rule in the database itself (class 23 in Postgres, a constraint in SQLite)
    that the API does not know about: only the backstop can catch it."""
    if backend.name == "postgresql":
        conn = await asyncpg.connect(backend.settings["EXAI_DATABASE_URL"])
        try:
            await conn.execute(
                "ALTER TABLE messages ADD CONSTRAINT not_forbidden CHECK (content <> 'forbidden')"
            )
        finally:
            await conn.close()
        return
    import aiosqlite

    async with aiosqlite.connect(backend.settings["EXAI_SQLITE_PATH"]) as db:
        await db.execute(
            "CREATE TRIGGER not_forbidden BEFORE INSERT ON messages "
            "WHEN NEW.content = 'forbidden' BEGIN SELECT RAISE(ABORT, 'forbidden'); END"
        )
        await db.commit()


async def test_a_refusal_by_the_database_is_422_over_http(
    captured: CapturedTelemetry, sql_backend: SqlBackend, redis_url: str
) -> None:
    settings = make_settings(**sql_backend.settings, REDIS_URL=redis_url)
    async with running_adapter(captured, settings) as adapter:
        client = adapter.client
        await client.post("/v1/conversations/rule/messages", json=message_body("fine"))
        await client.get("/v1/conversations/rule")
        await _refuse_forbidden_content(sql_backend)

        refused = await client.post(
            "/v1/conversations/rule/messages", json=message_body("forbidden", "k-forbidden")
        )
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "VALIDATION_ERROR"
        assert "nothing was written" in refused.json()["error"]["message"]
        assert "retry-after" not in refused.headers
        assert durable_up(adapter) == 1 and durable_errors(adapter) == 0
        assert (await client.get("/health/ready")).status_code == 200
        history = (await client.get("/v1/conversations/rule")).json()
        assert [m["content"] for m in history["messages"]] == ["fine"]
