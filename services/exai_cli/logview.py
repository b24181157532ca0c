"""A request's log lines under its waterfall, whole.

A body of several lines, and the traceback an ``logger.exception`` call attaches
(``exception.stacktrace``), are printed in full: continuation lines are indented under
the first line's text, so the column of times and levels stays readable.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.semconv.attributes import exception_attributes

from exai_cli.style import BOLD, DIM, Style, service_colours, signed, utc
from exai_cli.types import LogRecord, Trace

_SEVERITY_COLOURS = {"FATAL": "1;31", "ERROR": "31", "WARN": "33", "DEBUG": "2"}


def _severity(severity: str, style: Style) -> str:
    short = {"WARNING": "WARN", "CRITICAL": "FATAL"}.get(severity, severity)
    return style.paint(f"{short:<5}", _SEVERITY_COLOURS.get(short))


def body_lines(record: LogRecord) -> list[str]:
    """The body's lines, then the traceback when the body does not already hold it."""
    lines = record.body.rstrip().splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    stack = record.attributes.get(exception_attributes.EXCEPTION_STACKTRACE)
    if isinstance(stack, str) and stack.strip() and stack.strip() not in record.body:
        lines += stack.rstrip().splitlines()
    return lines or [""]


def render_logs(logs: Sequence[LogRecord], trace: Trace | None, style: Style) -> list[str]:
    """Log lines in time order: offset into the trace (or UTC time), level, service, span."""
    spans = {s.span_id: s for s in trace.spans} if trace else {}
    colours = service_colours([*(trace.services if trace else []), *(r.service for r in logs)])
    width = max((len(r.service) for r in logs), default=7)
    title = f"log lines ({len(logs)})" if trace else f"log lines of no stored trace ({len(logs)})"
    lines = [style.paint(title, BOLD)]
    for record in sorted(logs, key=lambda r: r.time_ns):
        # A line logged before the trace's first span (clock skew) gets a negative offset.
        when = (
            f"{signed(record.time_ns - trace.start_ns, style):>10}"
            if trace
            else utc(record.time_ns)
        )
        span = spans.get(record.span_id or "")
        where = f"[{span.name}]" if span else "[-]"
        first, *rest = body_lines(record)
        lines.append(
            f"{when}  {_severity(record.severity, style)}  "
            f"{style.paint(record.service.ljust(width), colours.get(record.service))}  "
            f"{style.paint(where, DIM)} {first}"
        )
        indent = " " * (len(when) + 2 + 5 + 2 + width + 2 + 4)
        lines += [indent + line for line in rest]
    return lines
