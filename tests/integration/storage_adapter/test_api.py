"""The HTTP API end to end, per SQL backend and per cache (DESIGN §5)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.storage_adapter.conftest import (
    SqlBackend,
    make_settings,
    message_body,
    running_adapter,
)
from tests.support.telemetry import CapturedTelemetry

pytestmark = pytest.mark.integration

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


async def test_conversation_round_trip(
    captured: CapturedTelemetry, sql_backend: SqlBackend, cache_settings: dict[str, str]
) -> None:
    settings = make_settings(**sql_backend.settings, **cache_settings)
    async with running_adapter(captured, settings) as adapter:
        client = adapter.client
        created = await client.post(
            "/v1/conversations",
            json={"continuation_id": "conv-1", "title": "Plans", "metadata": {"k": [1, 2]}},
        )
        assert created.status_code == 201
        conversation = created.json()
        assert conversation["continuation_id"] == "conv-1"
        assert conversation["title"] == "Plans"
        assert conversation["metadata"] == {"k": [1, 2]}

        again = await client.post(
            "/v1/conversations", json={"continuation_id": "conv-1", "title": "Other"}
        )
        assert again.status_code == 200
        assert again.json() == conversation  # the existing one, unchanged

        contents = ["first", "second", "third", "fourth"]
        roles = ["system", "user", "assistant", "tool"]
        ids = []
        for content, role in zip(contents, roles, strict=True):
            stored = await client.post(
                "/v1/conversations/conv-1/messages",
                json=message_body(content, f"conv-1:{content}", role),
            )
            assert stored.status_code == 201
            body = stored.json()
            assert body["role"] == role and body["content"] == content
            assert body["continuation_id"] == "conv-1"
            assert body["conversation_id"] == conversation["id"]
            ids.append(body["id"])
        assert ids == sorted(ids)

        for _ in range(2):  # a miss that fills the cache, then a hit: same answer
            history = await client.get("/v1/conversations/conv-1")
            assert history.status_code == 200
            document = history.json()
            assert [m["content"] for m in document["messages"]] == contents
            assert [m["role"] for m in document["messages"]] == roles
            assert document["has_more"] is False
            assert document["title"] == "Plans"
            assert document["updated_at"] > conversation["updated_at"]

        last_two = (await client.get("/v1/conversations/conv-1", params={"limit": 2})).json()
        assert [m["content"] for m in last_two["messages"]] == ["third", "fourth"]
        assert last_two["has_more"] is True

        none = (await client.get("/v1/conversations/conv-1", params={"limit": 0})).json()
        assert none["messages"] == [] and none["has_more"] is True


async def test_server_makes_a_uuid4_continuation_id(
    captured: CapturedTelemetry, sql_backend: SqlBackend
) -> None:
    async with running_adapter(captured, make_settings(**sql_backend.settings)) as adapter:
        first = await adapter.client.post("/v1/conversations", json={})
        second = await adapter.client.post("/v1/conversations", json={"title": "t"})
        assert first.status_code == second.status_code == 201
        assert UUID4.match(first.json()["continuation_id"])
        assert first.json()["continuation_id"] != second.json()["continuation_id"]
        fetched = await adapter.client.get(f"/v1/conversations/{first.json()['continuation_id']}")
        assert fetched.json()["messages"] == []


async def test_first_message_creates_the_conversation(
    captured: CapturedTelemetry, sql_backend: SqlBackend
) -> None:
    async with running_adapter(captured, make_settings(**sql_backend.settings)) as adapter:
        stored = await adapter.client.post(
            "/v1/conversations/fresh_conv/messages", json=message_body("hello", "k-1")
        )
        assert stored.status_code == 201
        history = (await adapter.client.get("/v1/conversations/fresh_conv")).json()
        assert history["title"] is None and history["metadata"] == {}
        assert [m["content"] for m in history["messages"]] == ["hello"]


async def test_unknown_conversation_is_404(
    captured: CapturedTelemetry, sql_backend: SqlBackend
) -> None:
    async with running_adapter(captured, make_settings(**sql_backend.settings)) as adapter:
        response = await adapter.client.get("/v1/conversations/never-seen")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"
        assert "never-seen" in response.json()["error"]["message"]


async def test_idempotent_retry_and_conflict(
    captured: CapturedTelemetry, sql_backend: SqlBackend, cache_settings: dict[str, str]
) -> None:
    settings = make_settings(**sql_backend.settings, **cache_settings)
    async with running_adapter(captured, settings) as adapter:
        client = adapter.client
        body = {**message_body("once", "retry-key"), "metadata": {"attempt": 1}}
        first = await client.post("/v1/conversations/idem/messages", json=body)
        retry = await client.post(
            "/v1/conversations/idem/messages", json={**body, "metadata": {"attempt": 2}}
        )
        assert first.status_code == 201
        assert retry.status_code == 200
        assert retry.json() == first.json()  # the stored message, not a new one

        for changed in (
            {**body, "content": "different"},
            {**body, "role": "assistant"},
        ):
            conflict = await client.post("/v1/conversations/idem/messages", json=changed)
            assert conflict.status_code == 409
            assert conflict.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"
        elsewhere = await client.post("/v1/conversations/other-conv/messages", json=body)
        assert elsewhere.status_code == 409
        # The rejected append created nothing.
        assert (await client.get("/v1/conversations/other-conv")).status_code == 404

        history = (await client.get("/v1/conversations/idem")).json()
        assert [m["content"] for m in history["messages"]] == ["once"]


@pytest.mark.parametrize(
    ("path", "body", "where"),
    [
        (
            "/v1/conversations/ok-id/messages",
            {"role": "bot", "content": "x", "idempotency_key": "k"},
            "body.role",
        ),
        (
            "/v1/conversations/ok-id/messages",
            {"role": "user", "content": "x"},
            "body.idempotency_key",
        ),
        (
            "/v1/conversations/ok-id/messages",
            {"role": "user", "content": 7, "idempotency_key": "k"},
            "body.content",
        ),
        (
            "/v1/conversations/ok-id/messages",
            {"role": "user", "content": "x", "idempotency_key": "has space"},
            "body.idempotency_key",
        ),
        (
            "/v1/conversations/ok-id/messages",
            {"role": "user", "content": "x", "idempotency_key": "k", "metadata": [1]},
            "body.metadata",
        ),
        (
            "/v1/conversations/no/messages",
            {"role": "user", "content": "x", "idempotency_key": "k"},
            "path.continuation_id",
        ),
        (
            "/v1/conversations/bad%20id/messages",
            {"role": "user", "content": "x", "idempotency_key": "k"},
            "path.continuation_id",
        ),
        (
            f"/v1/conversations/{'a' * 129}/messages",
            {"role": "user", "content": "x", "idempotency_key": "k"},
            "path.continuation_id",
        ),
        ("/v1/conversations", {"continuation_id": "x!"}, "body.continuation_id"),
        ("/v1/conversations", {"title": "t" * 513}, "body.title"),
    ],
)
async def test_invalid_input_is_422_naming_the_field(
    captured: CapturedTelemetry, tmp_path: Path, path: str, body: object, where: str
) -> None:
    settings = make_settings(EXAI_SQLITE_PATH=f"{tmp_path}/exai.db")
    async with running_adapter(captured, settings) as adapter:
        response = await adapter.client.post(path, json=body)
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert where in error["message"]
        assert where in [d["loc"] for d in error["details"]]


async def test_configured_limits(captured: CapturedTelemetry, tmp_path: Path) -> None:
    settings = make_settings(
        EXAI_SQLITE_PATH=f"{tmp_path}/exai.db",
        EXAI_MAX_CONTENT_CHARS=10,
        EXAI_MAX_METADATA_BYTES=32,
        EXAI_HISTORY_MAX_LIMIT=5,
        EXAI_HISTORY_DEFAULT_LIMIT=2,
    )
    async with running_adapter(captured, settings) as adapter:
        client = adapter.client
        long = await client.post("/v1/conversations/lim/messages", json=message_body("x" * 11))
        assert long.status_code == 422
        assert "EXAI_MAX_CONTENT_CHARS" in long.json()["error"]["message"]
        meta = await client.post("/v1/conversations", json={"metadata": {"blob": "y" * 40}})
        assert meta.status_code == 422
        assert "EXAI_MAX_METADATA_BYTES" in meta.json()["error"]["message"]

        for i in range(4):
            ok = await client.post("/v1/conversations/lim/messages", json=message_body(f"m{i}"))
            assert ok.status_code == 201
        default = (await client.get("/v1/conversations/lim")).json()
        assert [m["content"] for m in default["messages"]] == ["m2", "m3"]
        over = await client.get("/v1/conversations/lim", params={"limit": 6})
        assert over.status_code == 422
        assert "EXAI_HISTORY_MAX_LIMIT" in over.json()["error"]["message"]
        negative = await client.get("/v1/conversations/lim", params={"limit": -1})
        assert negative.status_code == 422

        huge = "z" * (settings.max_body_bytes + 1)
        too_big = await client.post(
            "/v1/conversations/lim/messages",
            content=f'{{"role":"user","content":"{huge}","idempotency_key":"k"}}',
            headers={"content-type": "application/json"},
        )
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"

        async def chunks():  # no Content-Length: the streamed size is what counts
            yield b'{"role":"user","content":"'
            for _ in range(settings.max_body_bytes // 65536 + 1):
                yield b"z" * 65536
            yield b'","idempotency_key":"k2"}'

        streamed = await client.post(
            "/v1/conversations/lim/messages",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        assert streamed.status_code == 413
        assert streamed.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_timestamps_are_utc(captured: CapturedTelemetry, sql_backend: SqlBackend) -> None:
    async with running_adapter(captured, make_settings(**sql_backend.settings)) as adapter:
        before = datetime.now(UTC)
        stored = (
            await adapter.client.post("/v1/conversations/tz-conv/messages", json=message_body("t"))
        ).json()
        after = datetime.now(UTC)
    created = datetime.fromisoformat(stored["created_at"])
    assert created.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= created <= after + timedelta(seconds=1)

    if sql_backend.name == "postgresql":
        column_type = await sql_backend.scalar(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'messages' AND column_name = 'created_at'"
        )
        assert column_type == "timestamp with time zone"
    else:
        raw = await sql_backend.scalar(
            "SELECT created_at FROM messages WHERE id = $1", stored["id"]
        )
        assert raw == stored["created_at"]
        assert raw.endswith("+00:00")


async def test_continuation_id_in_uuid_form_round_trips(
    captured: CapturedTelemetry, tmp_path: Path
) -> None:
    continuation_id = str(uuid.uuid4())
    settings = make_settings(EXAI_SQLITE_PATH=f"{tmp_path}/exai.db")
    async with running_adapter(captured, settings) as adapter:
        stored = await adapter.client.post(
            f"/v1/conversations/{continuation_id}/messages", json=message_body("x")
        )
        assert stored.status_code == 201
        fetched = await adapter.client.get(f"/v1/conversations/{continuation_id}")
        assert fetched.json()["continuation_id"] == continuation_id
