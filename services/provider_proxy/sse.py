"""Server-sent events, both ways: decoding the provider's stream, encoding ours.

The decoder is sans-I/O: feed it lines, it returns the `data` of each complete event.
Comments, `event:`/`id:`/`retry:` fields and blank keep-alives are skipped.
"""

from __future__ import annotations

import json
from typing import Any

DONE = "[DONE]"


class SseDecoder:
    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        """One line without its terminator; returns an event's data when one completes."""
        if line == "":
            if not self._data:
                return None
            data = "\n".join(self._data)
            self._data = []
            return data
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if field == "data":
            self._data.append(value.removeprefix(" "))
        return None

    def flush(self) -> str | None:
        """The last event when the stream ends without a blank line."""
        return self.feed("")


def encode_event(payload: Any) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


DONE_EVENT = encode_event(DONE)
