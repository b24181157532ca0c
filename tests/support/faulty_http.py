"""Misbehaving network peers for fault tests: real sockets on 127.0.0.1, port 0.

- :func:`hanging_server`: accepts connections and reads requests, never answers (a
  dependency that is up at the TCP level and stuck above it).
- :func:`relay`: forwards TCP to a real service. It keeps a copy of what clients sent
  (count requests by their request line), can hold back each chunk a client sends
  (a slow dependency), and can lose the response to chosen requests (the request was
  done, the answer is lost on the way back and the connection closed: the client
  cannot know whether it was done).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

CHUNK = 64 * 1024


@dataclass
class HangingServer:
    url: str
    connections: int = 0


@contextlib.asynccontextmanager
async def hanging_server() -> AsyncIterator[HangingServer]:
    writers: set[asyncio.StreamWriter] = set()
    state = HangingServer("")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        writers.add(writer)
        try:
            while await reader.read(CHUNK):
                pass
        except ConnectionError:
            pass
        finally:
            writers.discard(writer)
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield state
    finally:
        server.close()
        for writer in list(writers):
            writer.close()
        await server.wait_closed()


@dataclass
class Relay:
    url: str
    # Each chunk a client sends waits this long before it is forwarded.
    delay_s: float = 0.0
    # The next this-many requests whose request line starts with `lose_responses_to`
    # are done upstream, but their response is dropped and the connection closed.
    lose_responses_to: str = ""
    lose_responses: int = 0
    sent: bytearray = field(default_factory=bytearray)

    def count(self, request_line_start: str) -> int:
        """Requests whose request line starts with e.g. ``"GET /health/ready"``."""
        return bytes(self.sent).count(request_line_start.encode())

    def text(self) -> str:
        return bytes(self.sent).decode("utf-8", "replace")


@contextlib.asynccontextmanager
async def relay(target_url: str, *, delay_s: float = 0.0) -> AsyncIterator[Relay]:
    target = urlsplit(target_url)
    assert target.hostname and target.port, target_url
    state = Relay("", delay_s)
    tasks: set[asyncio.Task[None]] = set()
    writers: set[asyncio.StreamWriter] = set()

    async def pump(
        src: asyncio.StreamReader, dst: asyncio.StreamWriter, lose: asyncio.Event, *, upstream: bool
    ) -> None:
        try:
            while data := await src.read(CHUNK):
                if upstream:
                    state.sent += data
                    prefix = state.lose_responses_to.encode()
                    if state.lose_responses and prefix and data.startswith(prefix):
                        state.lose_responses -= 1
                        lose.set()
                    if state.delay_s:
                        await asyncio.sleep(state.delay_s)
                elif lose.is_set():
                    break  # the response arrived; the client never sees it
                dst.write(data)
                await dst.drain()
        except ConnectionError:
            pass
        finally:
            dst.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port)
        except OSError:
            writer.close()
            tasks.discard(task)
            return
        writers.add(up_writer)
        lose = asyncio.Event()
        try:
            await asyncio.gather(
                pump(reader, up_writer, lose, upstream=True),
                pump(up_reader, writer, lose, upstream=False),
            )
        finally:
            up_writer.close()
            writer.close()
            tasks.discard(task)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield state
    finally:
        server.close()
        # Closing the sockets ends the pumps. (Cancelling a handler task instead makes
        # Python 3.11's stream callback log an error.)
        for writer in writers:
            writer.close()
        if tasks:
            await asyncio.wait(set(tasks), timeout=5)
        await server.wait_closed()
