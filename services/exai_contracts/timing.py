"""How provider-proxy tells the gateway how long it waited on the LLM provider.

The gateway's latency objective is about what EXAI controls: a call's duration minus
the time spent waiting on the provider's API. provider-proxy knows that time; it reports
it as a W3C ``Server-Timing`` metric named ``upstream`` (milliseconds):

- on every chat-completion response, as the ``Server-Timing`` header (for a stream, the
  wait until its first chunk);
- at the end of a stream, as an SSE comment line before ``data: [DONE]`` (the whole
  wait), which SSE clients ignore: ``: server-timing upstream;dur=1234.5``.
"""

from __future__ import annotations

import re

SERVER_TIMING_HEADER = "Server-Timing"
UPSTREAM_METRIC = "upstream"
SSE_COMMENT_PREFIX = ": server-timing "

_UPSTREAM = re.compile(r"(?:^|,)\s*upstream\s*;(?:[^,]*;)?\s*dur=([0-9]+(?:\.[0-9]+)?)")
# A day: anything longer is not a measurement of one request.
_MAX_S = 86_400.0


def format_upstream(seconds: float) -> str:
    """The ``Server-Timing`` value for `seconds` of waiting on the provider."""
    return f"{UPSTREAM_METRIC};dur={max(seconds, 0.0) * 1000:.1f}"


def parse_upstream(value: str | None) -> float | None:
    """Seconds from a ``Server-Timing`` value, or None when it has no usable ``upstream``."""
    if not value:
        return None
    match = _UPSTREAM.search(value)
    if match is None:
        return None
    seconds = float(match.group(1)) / 1000
    return seconds if seconds <= _MAX_S else None


def sse_comment(seconds: float) -> bytes:
    """The SSE comment event that carries the whole stream's wait."""
    return f"{SSE_COMMENT_PREFIX}{format_upstream(seconds)}\n\n".encode()


def parse_sse_comment(line: str) -> float | None:
    """Seconds from an SSE line, if it is the proxy's server-timing comment."""
    if not line.startswith(SSE_COMMENT_PREFIX):
        return None
    return parse_upstream(line[len(SSE_COMMENT_PREFIX) :])
