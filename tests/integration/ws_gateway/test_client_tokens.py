"""Several client tokens (issue 8, point 12): each token names a client, the client id
reaches calls and spans (`exai.client.id`), the token never reaches a span or a log."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.integration.ws_gateway.stack import TOKEN, Stack, native
from tests.integration.ws_gateway.test_malformed import closed_with, mcp
from ws_gateway.server import Gateway

pytestmark = pytest.mark.integration

ALICE = "alice-token-0123456789-abcdef"
BOB = "bob-token-0123456789-abcdef"
BOB_NEXT = "bob-next-token-0123456789-abc"  # a second token, e.g. while rotating
CAROL = "carol-token-0123456789-abcdef"
ALL_TOKENS = (TOKEN, ALICE, BOB, BOB_NEXT, CAROL)


def call_spans(stack: Stack) -> list[Any]:
    return [
        span
        for span in stack.captured.spans_of("ws-gateway")
        if span.name.startswith(("ws call_tool", "tools/call"))
    ]


def client_of(span: Any) -> str:
    return str(span.attributes["exai.client.id"])


async def gateway_with_clients(stack: Stack, tmp_path: Path) -> Gateway:
    tokens_file = tmp_path / "ws-tokens.json"
    tokens_file.write_text(json.dumps({"alice": ALICE, "bob": [BOB, BOB_NEXT]}))
    gateway, _ = await stack.start_gateway(
        EXAI_WS_TOKENS_FILE=str(tokens_file), EXAI_WS_TOKENS=json.dumps({"carol": CAROL})
    )
    return gateway


async def test_each_token_names_its_client_on_calls_and_spans(
    stack: Stack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = await gateway_with_clients(stack, tmp_path)
    stack.captured.exporter.clear()
    expected = []
    for token, client_id in [
        (ALICE, "alice"),
        (BOB, "bob"),
        (BOB_NEXT, "bob"),
        (CAROL, "carol"),
        (TOKEN, "default"),  # EXAI_WS_TOKEN still works
    ]:
        async with native(gateway, token=token) as client:
            frames = await client.run("status", request_id=client_id)
            assert frames[-1]["op"] == "call_tool_res"
            expected.append(client_id)
    async with mcp(gateway, token=BOB) as session:
        reply = await session.request(9, "tools/call", {"name": "status"})
        assert reply["result"]["isError"] is False
        expected.append("bob")
    spans = call_spans(stack)
    assert [client_of(span) for span in spans] == expected
    assert spans[-1].name == "tools/call status"

    # The token is never on a span of any service, nor in a log line.
    for span in stack.captured.spans():
        text = json.dumps(
            {
                "name": span.name,
                "attributes": dict(span.attributes or {}),
                "events": [dict(e.attributes or {}) for e in span.events],
                "status": span.status.description,
            },
            default=str,
        )
        assert not any(token in text for token in ALL_TOKENS), span.name
    for record in caplog.records:
        if record.name.startswith("websockets.client"):
            continue  # this test's own client, which logs its frames at DEBUG
        line = record.getMessage()
        assert not any(token in line for token in ALL_TOKENS), line


async def test_a_chat_carries_the_client_id_to_its_span(stack: Stack, tmp_path: Path) -> None:
    gateway = await gateway_with_clients(stack, tmp_path)
    stack.captured.exporter.clear()
    async with native(gateway, token=ALICE) as alice, native(gateway, token=CAROL) as carol:
        for client in (alice, carol):
            frames = await client.run("chat", {"prompt": "who am I?"}, request_id="c")
            assert frames[-1]["op"] == "call_tool_res"
    assert sorted(client_of(span) for span in call_spans(stack)) == ["alice", "carol"]


@pytest.mark.parametrize("token", ["alice-token", ALICE + "x", ALICE.upper(), "", BOB[:-1]])
async def test_a_bad_token_is_still_4003_and_401(stack: Stack, tmp_path: Path, token: str) -> None:
    gateway = await gateway_with_clients(stack, tmp_path)
    async with connect(gateway.url) as ws:
        await ws.send(json.dumps({"op": "hello", "token": token}))
        assert json.loads(await ws.recv()) == {
            "op": "hello_ack",
            "ok": False,
            "error": "unauthorized",
        }
        assert await closed_with(ws) == 4003
    with pytest.raises(InvalidStatus) as info:
        async with connect(
            f"{gateway.url}/mcp",
            subprotocols=["mcp"],  # type: ignore[list-item]
            additional_headers={"Authorization": f"Bearer {token or 'x'}"},
        ):
            pass
    assert info.value.response.status_code == 401
    assert call_spans(stack) == []
