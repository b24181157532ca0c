"""What both protocol cores share: the buffers between a sans-I/O core and its I/O.

A core takes frames in (`receive_text` / `receive_bytes`) and accumulates what the
asyncio layer must act on (events) and send (frames); the layer drains both after
every input.
"""

from __future__ import annotations

from typing import Generic, TypeVar

E = TypeVar("E")


class SansIOBuffers(Generic[E]):
    def __init__(self) -> None:
        self._events: list[E] = []
        self._outgoing: list[str] = []

    def events_received(self) -> list[E]:
        """Events since the last call, oldest first; the buffer is emptied."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[str]:
        """Text frames to send, in order; the buffer is emptied."""
        frames, self._outgoing = self._outgoing, []
        return frames
