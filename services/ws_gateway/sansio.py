"""What both protocol cores share: the buffers between a sans-I/O core and its I/O, and
strict JSON parsing of what a client sends.

A core takes frames in (`receive_text` / `receive_bytes`) and accumulates what the
asyncio layer must act on (events) and send (frames); the layer drains both after
every input.

:func:`parse_json` is the only way a frame's text becomes a value. It never raises
anything but :class:`MalformedJSON`: nesting past the interpreter's recursion limit
(``json`` recurses in C and raises RecursionError, which used to escape the handler and
close the connection with 1011), nesting deeper than any frame needs, ``NaN`` and
``Infinity`` (not JSON; they would reach providers as invalid JSON), integers past
``int()``'s digit limit. :func:`lone_surrogate` finds what ``\\ud800`` escapes decode to:
text no UTF-8 encoder (httpx, OTLP, our logs) accepts.
"""

from __future__ import annotations

import json
from typing import Generic, TypeVar

from exai_telemetry.correlation import normalize_correlation_id

E = TypeVar("E")

# Frames are flat: a call's arguments are a handful of strings, numbers and lists.
MAX_JSON_DEPTH = 32


class MalformedJSON(ValueError):
    """The text is not a JSON value this gateway accepts; ``str()`` says why."""


def _reject_constant(name: str) -> object:
    raise MalformedJSON(f"{name} is not valid JSON")


def parse_json(text: str, *, max_depth: int = MAX_JSON_DEPTH) -> object:
    """The JSON value of `text`; MalformedJSON (never RecursionError) when it is not one."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except MalformedJSON:
        raise
    except RecursionError:
        raise MalformedJSON(f"nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # JSONDecodeError, and int()'s digit limit
        raise MalformedJSON(str(exc)[:200]) from None
    if json_depth(value, limit=max_depth) > max_depth:
        raise MalformedJSON(f"nested deeper than {max_depth} levels")
    return value


def json_depth(value: object, *, limit: int) -> int:
    """How deeply arrays and objects nest in `value` (a scalar is 0, `[]` is 1); stops
    counting past `limit`. Iterative: safe on any depth."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[object] = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _is_lone_surrogate_text(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def lone_surrogate(value: object) -> bool:
    """Whether any string in `value` (object keys included) holds an unpaired surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _is_lone_surrogate_text(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def client_correlation_id(value: object) -> str | None:
    """A correlation ID from a frame, if usable, else None (a new one is made).

    Stricter than :func:`normalize_correlation_id`, whose pattern ends in ``$`` and so
    lets a trailing newline through: JSON can carry one, an ``X-Correlation-ID`` header
    cannot (httpx refuses the request, which became PROVIDER_ERROR)."""
    if not (isinstance(value, str) and value.isascii() and value.isprintable()):
        return None
    return normalize_correlation_id(value)


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
