"""Conversations belong to the client that made them (header ``X-EXAI-Client-ID``).

Another client reading or appending gets exactly the 404 of a conversation that does
not exist; creating one under a taken continuation ID is a 409 that says nothing about
the owner or the content.
"""

from __future__ import annotations

import pytest

from exai_contracts.ids import CLIENT_ID_HEADER
from tests.integration.storage_adapter.conftest import (
    SqlBackend,
    make_settings,
    message_body,
    running_adapter,
)
from tests.support.telemetry import CapturedTelemetry

pytestmark = pytest.mark.integration

ALICE = {CLIENT_ID_HEADER: "alice"}
BOB = {CLIENT_ID_HEADER: "bob.smith_2-x"}
SECRET = "alice's private plans"


async def test_another_client_cannot_tell_a_conversation_exists(
    captured: CapturedTelemetry, sql_backend: SqlBackend, cache_settings: dict[str, str]
) -> None:
    settings = make_settings(**sql_backend.settings, **cache_settings)
    async with running_adapter(captured, settings) as adapter:
        client = adapter.client
        created = await client.post(
            "/v1/conversations",
            json={"continuation_id": "alice-conv", "title": SECRET, "metadata": {"s": SECRET}},
            headers=ALICE,
        )
        assert created.status_code == 201
        assert "client_id" not in created.json()
        stored = await client.post(
            "/v1/conversations/alice-conv/messages",
            json=message_body(SECRET, "alice-1"),
            headers=ALICE,
        )
        assert stored.status_code == 201

        for _ in range(2):  # from the durable store, then from the cache
            mine = await client.get("/v1/conversations/alice-conv", headers=ALICE)
            assert [m["content"] for m in mine.json()["messages"]] == [SECRET]
            theirs = await client.get("/v1/conversations/alice-conv", headers=BOB)
            absent = await client.get("/v1/conversations/never-made", headers=BOB)
            assert theirs.status_code == absent.status_code == 404
            assert theirs.json() == {
                "error": {"code": "NOT_FOUND", "message": "conversation 'alice-conv' not found"}
            }
            assert absent.json()["error"]["message"] == "conversation 'never-made' not found"
            # No header is the default client: not alice either.
            assert (await client.get("/v1/conversations/alice-conv")).status_code == 404

        appended = await client.post(
            "/v1/conversations/alice-conv/messages",
            json=message_body("bob was here", "bob-1"),
            headers=BOB,
        )
        assert appended.status_code == 404
        assert appended.json() == theirs.json()
        # A retry of alice's key by bob: the same 404, not her message.
        replay = await client.post(
            "/v1/conversations/alice-conv/messages",
            json=message_body(SECRET, "alice-1"),
            headers=BOB,
        )
        assert replay.status_code == 404 and SECRET not in replay.text

        taken = await client.post(
            "/v1/conversations", json={"continuation_id": "alice-conv"}, headers=BOB
        )
        assert taken.status_code == 409
        assert taken.json()["error"]["code"] == "CONTINUATION_ID_TAKEN"
        assert SECRET not in taken.text and "alice" not in taken.text.replace("alice-conv", "")

        again = await client.post(
            "/v1/conversations", json={"continuation_id": "alice-conv"}, headers=ALICE
        )
        assert again.status_code == 200 and again.json()["title"] == SECRET

        history = (await client.get("/v1/conversations/alice-conv", headers=ALICE)).json()
        assert [m["content"] for m in history["messages"]] == [SECRET]

    assert await sql_backend.scalar("SELECT count(*) FROM messages") == 1
    owner = await sql_backend.scalar(
        "SELECT client_id FROM conversations WHERE continuation_id = $1", "alice-conv"
    )
    assert owner == "alice"


async def test_first_message_makes_the_sender_the_owner(
    captured: CapturedTelemetry, sql_backend: SqlBackend
) -> None:
    async with running_adapter(captured, make_settings(**sql_backend.settings)) as adapter:
        client = adapter.client
        first = await client.post(
            "/v1/conversations/bobs/messages", json=message_body("hi", "b-1"), headers=BOB
        )
        assert first.status_code == 201
        assert (await client.get("/v1/conversations/bobs", headers=ALICE)).status_code == 404
        assert (await client.get("/v1/conversations/bobs", headers=BOB)).status_code == 200
        # Without the header: the default client, which owns what it made.
        assert (
            await client.post("/v1/conversations/dflt/messages", json=message_body("x"))
        ).status_code == 201
        assert (await client.get("/v1/conversations/dflt")).status_code == 200
        assert (
            await client.get("/v1/conversations/dflt", headers={CLIENT_ID_HEADER: "default"})
        ).status_code == 200
    owner = await sql_backend.scalar(
        "SELECT client_id FROM conversations WHERE continuation_id = $1", "dflt"
    )
    assert owner == "default"


@pytest.mark.parametrize("bad", ["", "a b", "x" * 65, "tab\there", "ü", "a/b", "a:b"])
async def test_a_malformed_client_id_is_422(
    captured: CapturedTelemetry, sql_backend: SqlBackend, bad: str
) -> None:
    async with running_adapter(captured, make_settings(**sql_backend.settings)) as adapter:
        for response in [
            await adapter.client.get(
                "/v1/conversations/some-conv", headers={CLIENT_ID_HEADER: bad.encode()}
            ),
            await adapter.client.post(
                "/v1/conversations/some-conv/messages",
                json=message_body("x"),
                headers={CLIENT_ID_HEADER: bad.encode()},
            ),
            await adapter.client.post(
                "/v1/conversations", json={}, headers={CLIENT_ID_HEADER: bad.encode()}
            ),
        ]:
            assert response.status_code == 422, bad
            assert response.json()["error"]["code"] == "VALIDATION_ERROR"
            assert "x-exai-client-id" in response.json()["error"]["message"].lower()
    assert await sql_backend.scalar("SELECT count(*) FROM conversations") == 0
