"""Correlation ID: one ID per client request, visible on every span and log line.

The ID travels in W3C baggage (`exai.correlation_id`) so that it crosses every HTTP
hop with the trace context, and in the `X-Correlation-ID` header for humans and
clients that do not speak baggage. :class:`CorrelationIdSpanProcessor` copies it from
baggage onto every span, auto-instrumented ones included.
"""

from __future__ import annotations

import random
import re
import uuid

from opentelemetry import baggage, context, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

CORRELATION_BAGGAGE_KEY = "exai.correlation_id"
CORRELATION_ATTRIBUTE = "exai.correlation_id"
CORRELATION_HEADER = "X-Correlation-ID"

# Client-supplied IDs end up in span attributes and log lines: keep them short and
# free of anything that could break a log parser or smuggle content.
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def new_correlation_id() -> str:
    """A random UUID4. From `random`, like OTel's trace IDs, not `os.urandom`: an ID
    must be unique, not unguessable, and the syscall showed in the proxy's profile."""
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


def normalize_correlation_id(candidate: object) -> str | None:
    """The client's ID if it is acceptable, else None (the caller makes a new one)."""
    if isinstance(candidate, str) and _VALID_ID.fullmatch(candidate):
        return candidate
    return None


def current_correlation_id(ctx: Context | None = None) -> str | None:
    value = baggage.get_baggage(CORRELATION_BAGGAGE_KEY, ctx)
    return value if isinstance(value, str) else None


def with_correlation_id(correlation_id: str, ctx: Context | None = None) -> Context:
    """A context carrying the correlation ID in baggage (attach it, or pass it as parent)."""
    return baggage.set_baggage(CORRELATION_BAGGAGE_KEY, correlation_id, ctx)


# The gateway tool a call came from, in baggage too, so provider-proxy can attribute
# tokens and cost to it. Metric labels must stay bounded: only the gateway's own tool
# names pass; a call without it (a direct OpenAI-SDK client) is `direct`.
TOOL_BAGGAGE_KEY = "exai.tool"
GATEWAY_TOOLS = frozenset({"chat", "consensus", "listmodels", "status"})
DIRECT_CALL = "direct"
OTHER_TOOL = "other"


def with_tool(tool: str, ctx: Context | None = None) -> Context:
    """A context carrying the calling tool's name in baggage."""
    return baggage.set_baggage(TOOL_BAGGAGE_KEY, tool, ctx)


def current_tool_label(ctx: Context | None = None) -> str:
    """The calling tool for metric labels: a gateway tool name, `direct` or `other`."""
    value = baggage.get_baggage(TOOL_BAGGAGE_KEY, ctx)
    if value is None:
        return DIRECT_CALL
    return value if value in GATEWAY_TOOLS else OTHER_TOOL


def correlation_headers(ctx: Context | None = None) -> dict[str, str]:
    correlation_id = current_correlation_id(ctx)
    return {CORRELATION_HEADER: correlation_id} if correlation_id else {}


def _parent_correlation_id(ctx: Context) -> str | None:
    """The correlation ID on the span current in `ctx`, if it is one of this process's."""
    parent = trace.get_current_span(ctx)
    attributes = parent.attributes if isinstance(parent, ReadableSpan) else None
    value = attributes.get(CORRELATION_ATTRIBUTE) if attributes else None
    return value if isinstance(value, str) else None


class CorrelationIdSpanProcessor(SpanProcessor):
    """Sets `exai.correlation_id` on every span whose context carries it in baggage."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        ctx = parent_context if parent_context is not None else context.get_current()
        correlation_id = current_correlation_id(ctx)
        if correlation_id is None and parent_context is not None:
            # Instrumentations sometimes pass an extracted context that lacks the
            # baggage already attached to the current one.
            correlation_id = current_correlation_id(context.get_current())
        if correlation_id is None:
            # Work that lost the baggage but kept its parent span (SQLAlchemy's pool
            # connects in a greenlet) takes the ID its parent span carries.
            correlation_id = _parent_correlation_id(ctx)
        if correlation_id is not None and span.is_recording():
            span.set_attribute(CORRELATION_ATTRIBUTE, correlation_id)

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
