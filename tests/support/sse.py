"""Reading OpenAI-style SSE responses (`data: {chunk}` … `data: [DONE]`) in tests."""

from __future__ import annotations

import json
from typing import Any

import httpx


async def sse_payloads(response: httpx.Response) -> list[str]:
    """The `data:` payloads of an SSE response, in order (`[DONE]` included)."""
    payloads = []
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            payloads.append(line.removeprefix("data: "))
        elif not line.startswith(":"):  # comments (the proxy's server-timing) are no data
            assert line == "", f"unexpected SSE line {line!r}"
    return payloads


def chunks(payloads: list[str]) -> list[dict[str, Any]]:
    assert payloads[-1] == "[DONE]"
    return [json.loads(p) for p in payloads[:-1]]


def streamed_text(parsed: list[dict[str, Any]]) -> str:
    return "".join(
        choice["delta"].get("content") or "" for chunk in parsed for choice in chunk["choices"]
    )
