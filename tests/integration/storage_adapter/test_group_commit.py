"""Postgres group commit: concurrent appends share a transaction (one WAL flush), and
every message keeps its own outcome, its own spans and exactly-once storage."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from opentelemetry.trace import SpanKind
from sqlalchemy import event

from storage_adapter.errors import ConversationNotFound, IdempotencyConflict, InvalidData
from storage_adapter.models import AppendResult, NewMessage, utc_now
from storage_adapter.store.sql import SqlStore, create_engine
from storage_adapter.telemetry import M_STORAGE_APPEND_COMMIT_MESSAGES
from tests.integration.storage_adapter.conftest import (
    create_database,
    make_settings,
    message_body,
    running_adapter,
)
from tests.support.servers import PostgresServer
from tests.support.telemetry import CapturedTelemetry, metric_points

pytestmark = pytest.mark.integration

PARALLEL = 32


def _counting_commits(store: SqlStore) -> list[int]:
    commits = [0]

    def on_commit(_conn: Any) -> None:
        commits[0] += 1

    event.listen(store.engine.sync_engine, "commit", on_commit)
    return commits


async def test_concurrent_appends_share_commits_each_in_its_own_trace(
    captured: CapturedTelemetry, postgres_srv: PostgresServer
) -> None:
    settings = make_settings(EXAI_DATABASE_URL=await create_database(postgres_srv))
    async with running_adapter(captured, settings) as adapter:
        await adapter.client.get("/health/ready")
        captured.exporter.clear()
        responses = await asyncio.gather(
            *(
                adapter.client.post(
                    f"/v1/conversations/gc-{i}/messages", json=message_body(f"m{i}")
                )
                for i in range(PARALLEL)
            )
        )
        assert [r.status_code for r in responses] == [201] * PARALLEL
        histogram = [p for _, p in metric_points(adapter.reader, M_STORAGE_APPEND_COMMIT_MESSAGES)]

    assert sum(p.sum for p in histogram) == PARALLEL  # every message counted once
    transactions = sum(p.count for p in histogram)
    assert transactions <= PARALLEL // 4, transactions  # measured: 2 or 3

    # Each message's statements stay under its own request's server span.
    spans = captured.spans_of("storage-adapter")
    servers = {s.context.trace_id: s for s in spans if s.kind == SpanKind.SERVER}
    inserts = [
        s
        for s in spans
        if s.attributes and "INSERT INTO messages" in str(s.attributes.get("db.query.text"))
    ]
    assert sorted(s.context.trace_id for s in inserts) == sorted(servers)
    batches = [s for s in spans if s.name == "append_message batch"]
    assert batches
    linked = {link.context.trace_id for b in batches for link in b.links}
    assert linked <= set(servers) and len(linked) == sum(len(b.links) for b in batches)
    # A batch's own span is in the trace of the append that opened it, so it carries a
    # correlation ID like every other span.
    for batch in batches:
        assert batch.context.trace_id in {link.context.trace_id for link in batch.links}
    without = [s.name for s in spans if not (s.attributes or {}).get("exai.correlation_id")]
    assert without == []


async def test_a_refused_message_in_a_batch_fails_alone(postgres_srv: PostgresServer) -> None:
    url = await create_database(postgres_srv)
    store = SqlStore(
        create_engine(
            make_settings(EXAI_DATABASE_URL=url).sqlalchemy_url(), timeout_s=5, pool_size=4
        )
    )
    try:
        await store.initialize()
        await store.append_message(
            "theirs", "other-client", NewMessage("user", "x", "k-theirs"), utc_now()
        )
        await store.append_message(
            "mine-0", "default", NewMessage("user", "first", "k-reused"), utc_now()
        )
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:  # a rule only the database knows (SQLSTATE class 23)
            await conn.execute(
                "ALTER TABLE messages ADD CONSTRAINT not_forbidden CHECK (content <> 'forbidden')"
            )
        finally:
            await conn.close()
        commits = _counting_commits(store)

        good = [
            ("mine-" + str(i % 4), NewMessage("user", f"ok-{i}", f"k-ok-{i}")) for i in range(12)
        ]
        bad: list[tuple[str, NewMessage, type[Exception]]] = [
            ("mine-1", NewMessage("user", "forbidden", "k-forbidden"), InvalidData),
            ("mine-2", NewMessage("user", "a\x00b", "k-nul"), InvalidData),
            ("mine-3", NewMessage("user", "x", "k-nan", {"a": float("nan")}), InvalidData),
            ("theirs", NewMessage("user", "y", "k-not-mine"), ConversationNotFound),
            ("mine-2", NewMessage("user", "different", "k-reused"), IdempotencyConflict),
        ]
        calls = [store.append_message(cid, "default", m, utc_now()) for cid, m in good]
        calls += [store.append_message(cid, "default", m, utc_now()) for cid, m, _ in bad]
        # A retry of good[0] racing its first attempt, in the same batch.
        calls.append(store.append_message(good[0][0], "default", good[0][1], utc_now()))
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        await store.close()

    assert commits[0] <= 2  # measured: 1; one per message before group commit
    stored = outcomes[: len(good)]
    assert all(isinstance(r, AppendResult) and r.created for r in stored), outcomes
    for (_, _, expected), outcome in zip(bad, outcomes[len(good) : -1], strict=True):
        assert isinstance(outcome, expected), outcome
    retry = outcomes[-1]
    assert isinstance(retry, AppendResult) and not retry.created
    first = stored[0]
    assert isinstance(first, AppendResult) and retry.message.id == first.message.id

    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        rows = await conn.fetch(
            "SELECT c.continuation_id, m.content, m.idempotency_key FROM messages m "
            "JOIN conversations c ON c.id = m.conversation_id ORDER BY m.id"
        )
    finally:
        await conn.close()
    keys = [r["idempotency_key"] for r in rows]
    assert sorted(keys) == sorted(["k-theirs", "k-reused", *(f"k-ok-{i}" for i in range(12))])
    # Within a conversation, ids follow arrival order.
    for cid in ("mine-0", "mine-1", "mine-2", "mine-3"):
        mine = [r["content"] for r in rows if r["continuation_id"] == cid]
        expected = [m.content for c, m in good if c == cid]
        assert mine == (["first", *expected] if cid == "mine-0" else expected)


async def test_a_cancelled_caller_does_not_cancel_its_write(postgres_srv: PostgresServer) -> None:
    url = await create_database(postgres_srv)
    store = SqlStore(
        create_engine(
            make_settings(EXAI_DATABASE_URL=url).sqlalchemy_url(), timeout_s=5, pool_size=4
        )
    )
    keys = [uuid.uuid4().hex for _ in range(8)]
    try:
        await store.initialize()
        tasks = [
            asyncio.create_task(
                store.append_message(
                    f"cancel-{i}", "default", NewMessage("user", "x", key), utc_now()
                )
            )
            for i, key in enumerate(keys)
        ]
        await asyncio.sleep(0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await store.close()  # waits for the queued writes
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM messages WHERE idempotency_key = ANY($1::text[])", keys
        )
    finally:
        await conn.close()
    assert count == len(keys)
