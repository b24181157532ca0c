"""Server-sent events, both ways: decoding the provider's stream, encoding ours.

Decoding is sans-I/O and bounded: :class:`LineSplitter` takes the bytes as they come
and returns complete lines (CRLF, LF or CR), :class:`SseDecoder` takes lines and returns
the `data` of each complete event. Comments, `event:`/`id:`/`retry:` fields and blank
keep-alives are skipped. Neither holds more than `max_bytes` of one line or one event:
past that they raise :class:`SseLimitExceeded` instead of buffering a provider's
endless line.
"""

from __future__ import annotations

import json
import re
from typing import Any

DONE = "[DONE]"
_LINE_END = re.compile(rb"\r\n|\r|\n")


class SseLimitExceeded(Exception):
    """A line or an event longer than allowed."""


class LineSplitter:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self._after_cr = False  # the last read ended in CR: a leading LF belongs to it

    def feed(self, data: bytes) -> list[bytes]:
        """The lines `data` completes, without their terminators."""
        if not data:
            return []
        if self._after_cr and data[:1] == b"\n":
            data = data[1:]
        self._after_cr = False
        buffer = self._buffer
        # What is buffered holds no line end: search only the new bytes.
        position = len(buffer)
        buffer += data
        lines: list[bytes] = []
        start = 0
        while (end := _LINE_END.search(buffer, position)) is not None:
            self._check(end.start() - start)
            lines.append(bytes(buffer[start : end.start()]))
            start = position = end.end()
            if end.group() == b"\r" and start == len(buffer):
                self._after_cr = True
        del buffer[:start]
        self._check(len(buffer))
        return lines

    def finish(self) -> bytes | None:
        """The last line when the stream ends without a line end, else None."""
        if not self._buffer:
            return None
        line = bytes(self._buffer)
        self._buffer.clear()
        return line

    def _check(self, size: int) -> None:
        if size > self.max_bytes:
            raise SseLimitExceeded(f"an SSE line is longer than {self.max_bytes} bytes")


class SseDecoder:
    def __init__(self, max_bytes: int | None = None) -> None:
        """`max_bytes` bounds one event's data (its lines joined)."""
        self.max_bytes = max_bytes
        self._data: list[str] = []
        self._size = 0

    def feed(self, line: str) -> str | None:
        """One line without its terminator; returns an event's data when one completes."""
        if line == "":
            if not self._data:
                return None
            data = "\n".join(self._data)
            self._data = []
            self._size = 0
            return data
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if field == "data":
            value = value.removeprefix(" ")
            self._size += len(value) + 1
            if self.max_bytes is not None and self._size > self.max_bytes:
                raise SseLimitExceeded(f"an SSE event is longer than {self.max_bytes} bytes")
            self._data.append(value)
        return None

    def flush(self) -> str | None:
        """The last event when the stream ends without a blank line."""
        return self.feed("")


def encode_event(payload: Any) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


DONE_EVENT = encode_event(DONE)
