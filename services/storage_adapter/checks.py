"""Input the durable stores cannot hold is refused at the API (422); tracing keys in
metadata are dropped.

What the stores refuse, and why it is checked here rather than left to them: Postgres
rejects a NUL character in text (SQLSTATE 22021) and in JSON (22P05), the drivers
cannot encode a lone surrogate (asyncpg, sqlite3), and JSON has no NaN or Infinity
(Postgres: 22P02; the API could not even send such a value back). Left to the
database, each looked like an outage. Metadata nesting is bounded too, well below
where any JSON encoder or decoder in the path would recurse too deep.

Tracing keys (``traceparent``, ``baggage``, B3, Jaeger, … at any depth) belong to
traces, not to stored rows: baggage carries whatever a caller put in it, and a stored
traceparent ties a row to a trace. They are removed silently, like a header a proxy
does not forward. Error messages name the problem, never the input.
"""

from __future__ import annotations

import math
from typing import Any

MAX_METADATA_DEPTH = 32

TRACING_KEYS = frozenset(
    {
        "traceparent",
        "tracestate",
        "baggage",
        "b3",
        "uber-trace-id",
        "sentry-trace",
        "grpc-trace-bin",
        "x-cloud-trace-context",
        "x-amzn-trace-id",
        "correlation-context",
    }
)
TRACING_PREFIXES = ("x-b3-", "uberctx-", "ot-baggage-", "ot-tracer-", "x-datadog-")


def is_tracing_key(key: str) -> bool:
    """Header-style names, in any case, with ``-`` or ``_``."""
    name = key.strip().lower().replace("_", "-")
    return name in TRACING_KEYS or name.startswith(TRACING_PREFIXES)


def text_problem(value: str) -> str | None:
    """Why no durable store can hold ``value``, or None."""
    if "\x00" in value:
        return "contains a NUL character (U+0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode)"
    return None


def check_text(value: str) -> str:
    """``value``, or ValueError (a pydantic validator's 422)."""
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _scalar_problem(value: object) -> str | None:
    if value is None or isinstance(value, bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "holds a number that is not finite"
    if isinstance(value, str):
        problem = text_problem(value)
        return None if problem is None else f"holds a string that {problem}"
    return f"holds a {type(value).__name__}, which is not JSON"


_Container = dict[str, Any] | list[Any]
_Pending = list[tuple[_Container, _Container, int]]


def _copy(value: Any, pending: _Pending, depth: int) -> Any:
    """A scalar, checked; or an empty container, filled later from ``pending``."""
    if isinstance(value, dict | list):
        container: _Container = {} if isinstance(value, dict) else []
        pending.append((value, container, depth + 1))
        return container
    problem = _scalar_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def clean_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``metadata`` without tracing keys; ValueError if a store cannot hold it.

    Iterative, so that no nesting depth can exhaust the stack before it is refused.
    """
    root: dict[str, Any] = {}
    pending: _Pending = [(metadata, root, 1)]
    while pending:
        source, target, depth = pending.pop()
        if depth > MAX_METADATA_DEPTH:
            raise ValueError(f"nested deeper than {MAX_METADATA_DEPTH} levels")
        if isinstance(source, dict) and isinstance(target, dict):
            for key, value in source.items():
                if not isinstance(key, str):
                    raise ValueError("has a key that is not a string")
                problem = text_problem(key)
                if problem is not None:
                    raise ValueError(f"has a key that {problem}")
                if not is_tracing_key(key):
                    target[key] = _copy(value, pending, depth)
        elif isinstance(source, list) and isinstance(target, list):
            target.extend(_copy(value, pending, depth) for value in source)
    return root
