"""A connection's frame flushing: a task cancelled mid-send never takes frames with it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from ws_gateway.connections import NativeConnection
from ws_gateway.protocol import NativeProtocol

TOKEN = "s3cret-token-for-tests"


class SlowSocket:
    """Writes each frame at once, then waits for the peer to drain it (backpressure)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.drained = asyncio.Event()

    async def send(self, frame: str) -> None:
        self.sent.append(json.loads(frame))
        await self.drained.wait()


async def test_frames_of_a_flush_cancelled_mid_send_go_out_with_the_next_flush() -> None:
    proto = NativeProtocol(TOKEN, [], max_frame_bytes=1024)
    ws = SlowSocket()
    connection = NativeConnection(ws, None, proto, route="/", hello_timeout_s=1)  # type: ignore[arg-type]
    proto.receive_text(json.dumps({"op": "hello", "token": TOKEN, "session_id": "abc"}))
    proto.receive_text(json.dumps({"op": "ping"}))  # e.g. another call's frame, queued too

    flushing = asyncio.create_task(connection._flush())
    await asyncio.sleep(0)
    assert [f["op"] for f in ws.sent] == ["hello_ack"]  # written; now waiting to drain
    flushing.cancel()  # the flushing call was cancelled by its client
    with pytest.raises(asyncio.CancelledError):
        await flushing

    ws.drained.set()
    await connection._flush()
    assert [f["op"] for f in ws.sent] == ["hello_ack", "pong"]
