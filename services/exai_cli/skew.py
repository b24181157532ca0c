"""Clock skew between services, shown rather than hidden.

A child span cannot start before its parent, and a server span cannot start before the
client span that called it. When one does, the two hosts' clocks disagree (or a service
sets its own timestamps), and every offset drawn from the other clock is off by as much.
The waterfall keeps each span where its own clock put it and says by how much it is out
of place, so the reader can correct by eye.
"""

from __future__ import annotations

from exai_cli.types import Span, SpanKind, Trace

# A server span routinely ends a little after its client span: the client has the whole
# answer and closes its span while the server's middleware is still closing its own.
# Only a gap larger than that is called skew.
END_TOLERANCE_NS = 10_000_000


def span_skew_ns(span: Span, parent: Span) -> int:
    """Negative: how far `span` starts before `parent`; positive: how far a server span
    ends after its client span; 0 when it lies where it can."""
    if span.start_ns < parent.start_ns:
        return span.start_ns - parent.start_ns
    over = span.end_ns - parent.end_ns
    if parent.kind is SpanKind.CLIENT and span.kind is SpanKind.SERVER and over > END_TOLERANCE_NS:
        return over
    return 0


def skews(trace: Trace) -> dict[str, int]:
    """Span ID → skew in nanoseconds, for the spans that are out of place."""
    by_id = {s.span_id: s for s in trace.spans}
    found = {}
    for span in trace.spans:
        parent = by_id.get(span.parent_span_id or "")
        if parent is not None and (skew := span_skew_ns(span, parent)):
            found[span.span_id] = skew
    return found
