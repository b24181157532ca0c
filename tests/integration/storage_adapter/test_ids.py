"""Continuation IDs: one pattern (exai_contracts.ids) in the path and in the body.

Requests are sent byte for byte (an HTTP client would resolve ``..`` or keep ``%2F``
its own way): whatever the target, an ID outside the pattern is a 422 or a 404, never
another route, and nothing is stored.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

import pytest

from exai_contracts.ids import CONTINUATION_ID_PATTERN
from tests.integration.storage_adapter.conftest import (
    Adapter,
    SqlBackend,
    make_settings,
    message_body,
    running_adapter,
)
from tests.support.telemetry import CapturedTelemetry

pytestmark = pytest.mark.integration

BAD_IDS = ["..", ".", "ab", "v1.2", "p:1", "%2e%2e", "%2E.", "a%2Fb", "abc%2Fmessages", "ab%5Ccd"]


async def raw_request(
    adapter: Adapter, method: str, target: str, body: Any = None
) -> tuple[int, dict[str, Any]]:
    """One HTTP/1.1 request with `target` sent exactly as given."""
    url = urlsplit(str(adapter.client.base_url))
    payload = b"" if body is None else json.dumps(body).encode()
    lines = [f"{method} {target} HTTP/1.1", f"Host: {url.netloc}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in adapter.client.headers.items() if k == "authorization"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, content = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    document = json.loads(content) if content.strip().startswith(b"{") else {}
    return status, document


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_an_id_outside_the_pattern_never_reaches_another_route(
    captured: CapturedTelemetry, sql_backend: SqlBackend, bad: str
) -> None:
    async with running_adapter(captured, make_settings(**sql_backend.settings)) as adapter:
        for method, target, body in [
            ("GET", f"/v1/conversations/{bad}", None),
            ("POST", f"/v1/conversations/{bad}", message_body("x")),
            ("POST", f"/v1/conversations/{bad}/messages", message_body("x")),
            ("GET", f"/v1/conversations/{bad}/messages", None),
        ]:
            status, document = await raw_request(adapter, method, target, body)
            assert status in (404, 405, 422), (method, target, status)
            if status == 422:
                assert document["error"]["code"] == "VALIDATION_ERROR"
                assert "path.continuation_id" in document["error"]["message"]
    assert await sql_backend.scalar("SELECT count(*) FROM messages") == 0
    assert await sql_backend.scalar("SELECT count(*) FROM conversations") == 0


@pytest.mark.parametrize("bad", ["..", ".", "ab", "v1.2", "p:1", "a/b", "é" * 3, "x" * 129])
async def test_body_continuation_id_uses_the_same_pattern(
    captured: CapturedTelemetry, sql_backend: SqlBackend, bad: str
) -> None:
    async with running_adapter(captured, make_settings(**sql_backend.settings)) as adapter:
        response = await adapter.client.post("/v1/conversations", json={"continuation_id": bad})
        assert response.status_code == 422
        assert "body.continuation_id" in response.json()["error"]["message"]
    assert await sql_backend.scalar("SELECT count(*) FROM conversations") == 0


async def test_the_pattern_is_the_shared_one_in_the_openapi_document(
    captured: CapturedTelemetry, sql_backend: SqlBackend
) -> None:
    async with running_adapter(captured, make_settings(**sql_backend.settings)) as adapter:
        document = adapter.app.openapi()
    patterns = set()
    for path in document["paths"].values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "continuation_id":
                    patterns.add(parameter["schema"]["pattern"])
    body = document["components"]["schemas"]["CreateConversationBody"]["properties"]
    patterns |= {option.get("pattern") for option in body["continuation_id"]["anyOf"]} - {None}
    assert patterns == {CONTINUATION_ID_PATTERN}
