"""What websockets logs about a request it cannot parse never shows the query string's
token (issue 8, point 14): a real gateway, real sockets, the JSON log lines on stdout."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import pytest

from exai_telemetry.logs import configure_logging
from exai_telemetry.redaction import REDACTED
from tests.integration.ws_gateway.stack import TOKEN, Stack, eventually

pytestmark = pytest.mark.integration

UNKNOWN_TOKEN = "some-other-clients-token-4242"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The test routes JSON lines to capsys's stdout (bound only while it runs)."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in list(root.handlers):
        if handler.get_name() == "exai-json":
            root.removeHandler(handler)
    root.setLevel(level)


async def send_raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


@pytest.mark.parametrize(
    "request_line",
    [
        f"GET /mcp?token={TOKEN} HTTP/1.0",  # the configured token, an old HTTP version
        f"GET /mcp?x=1?token={UNKNOWN_TOKEN} HTTP/2",  # a token we do not know
        f"GET /?access_token={UNKNOWN_TOKEN}&v=1 HTTP/1.0",
    ],
)
@pytest.mark.usefixtures("restore_logging")
async def test_an_unparsable_request_line_is_logged_without_its_token(
    stack: Stack, capsys: pytest.CaptureFixture[str], request_line: str
) -> None:
    gateway = stack.gateway
    configure_logging("ws-gateway", "INFO", gateway.telemetry.secrets)
    capsys.readouterr()
    port = int(gateway.url.rsplit(":", 1)[1].strip("/"))
    answer = await send_raw(port, f"{request_line}\r\nHost: gw\r\n\r\n".encode())
    assert TOKEN.encode() not in answer and UNKNOWN_TOKEN.encode() not in answer
    seen: list[str] = []

    async def logged() -> bool:
        seen.extend(capsys.readouterr().out.splitlines())
        return any("opening handshake failed" in line for line in seen)

    await eventually(logged)
    lines = [json.loads(line) for line in seen if line.startswith("{")]
    (failed,) = [line for line in lines if line["message"] == "opening handshake failed"]
    # websockets quotes the request line in the cause of its error …
    assert "HTTP request" in failed["exc_info"] or "HTTP/1.1" in failed["exc_info"]
    assert REDACTED in failed["exc_info"]
    # … and no line carries the token.
    text = "\n".join(seen)
    assert TOKEN not in text and UNKNOWN_TOKEN not in text
