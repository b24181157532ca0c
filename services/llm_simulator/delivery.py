"""Getting an answer to the client at the configured pace — or not at all.

Waits (latency, `hang`) end early when the client disconnects, so an abandoned request
never keeps a task alive for the full hang time. Streams are cancelled by Starlette
when the client goes away; :func:`sse_stream` counts that as a disconnect.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from starlette.requests import Request

from llm_simulator.generation import Usage, count_tokens
from llm_simulator.providers import Provider, ResponseMeta
from llm_simulator.state import Stats

logger = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
# A chunk cut off mid-object: what a proxy sees when an upstream dies mid-stream.
BROKEN_CHUNK = b'data: {"id": "broken", "choices": [{"index": 0, "delta": {"content": "\n\n'


def sse_event(payload: dict[str, Any]) -> bytes:
    return (
        b"data: "
        + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        + b"\n\n"
    )


def malformed_json(body: dict[str, Any]) -> bytes:
    """`body` serialised and cut in half: a 200 whose body does not parse."""
    encoded = json.dumps(body, ensure_ascii=False).encode()
    return encoded[: len(encoded) // 2]


async def _wait_for_disconnect(request: Request) -> None:
    # The body has been read already, so the next ASGI message is the disconnect.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def wait_unless_disconnected(request: Request, seconds: float, stats: Stats) -> bool:
    """Sleep `seconds`; False (and counted) if the client left first."""
    if seconds <= 0:
        return True
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({watcher}, timeout=seconds)
    finally:
        watcher.cancel()
    if done:
        stats.disconnects += 1
        logger.info("client disconnected while waiting")
        return False
    return True


def _delay(piece: str, tokens_per_s: float) -> float:
    return count_tokens(piece) / tokens_per_s if tokens_per_s > 0 else 0.0


async def sse_stream(
    provider: Provider,
    meta: ResponseMeta,
    pieces: Sequence[str],
    usage: Usage,
    *,
    include_usage: bool,
    tokens_per_s: float,
    malformed: bool,
    stats: Stats,
    truncated: bool = False,
    long_line_bytes: int = 0,
) -> AsyncIterator[bytes]:
    """`data: {chunk}` events paced at `tokens_per_s`, then `data: [DONE]`.

    `malformed`: one good content chunk, then a truncated one, then the connection ends
    without `[DONE]`. `truncated`: one good content chunk, then the response ends
    cleanly — no closing chunk, no `[DONE]` (what a proxy sees when an upstream stops
    mid-answer). `long_line_bytes`: the first content chunk's text is padded to that
    many characters, so its event is one line at least that long.
    """
    stats.streaming += 1
    try:
        for chunk in provider.opening_chunks(meta):
            yield sse_event(chunk)
        for index, piece in enumerate(pieces):
            await asyncio.sleep(_delay(piece, tokens_per_s))
            if malformed and index == 1:
                yield BROKEN_CHUNK
                return
            if truncated and index == 1:
                return
            if long_line_bytes and index == 0:
                piece = piece.ljust(long_line_bytes, "x")
            yield sse_event(provider.content_chunk(meta, piece))
        for chunk in provider.closing_chunks(meta, usage, include_usage):
            yield sse_event(chunk)
        yield DONE
    except asyncio.CancelledError:
        stats.disconnects += 1
        logger.info("client disconnected mid-stream")
        raise
    finally:
        stats.streaming -= 1
