"""The terminal waterfall: every span of a trace as a tree, on one time axis.

::

       start  duration   0                          2.61 s
      +0 µs    2.61 s  ▕██████████████████████████▏ ws-gateway      ws call_tool chat  server  …
    +1.2 ms   15.0 ms  ▕█                         ▏ ws-gateway      ├─ GET  client  …

Then the trace's log lines in time order, each with the span it was logged in. Colour
(one per service; errors and alarming attributes in red/yellow) only when asked: the
caller decides from the TTY and ``NO_COLOR``. Pure: strings in, a string out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from exai_cli.summary import Detail, details, error_lines
from exai_cli.types import LogRecord, Span, SpanKind, Trace

_RESET = "\x1b[0m"
_BOLD, _DIM, _RED, _YELLOW = "1", "2", "31", "33"
_SERVICE_COLOURS = ("36", "35", "34", "32", "96", "95", "94", "92")
_SEVERITY_COLOURS = {"FATAL": "1;31", "ERROR": "31", "WARN": "33", "DEBUG": "2"}
DEFAULT_BAR_WIDTH = 32


@dataclass(frozen=True)
class Style:
    colour: bool = False
    unicode: bool = True
    bar_width: int = DEFAULT_BAR_WIDTH

    def paint(self, text: str, code: str | None) -> str:
        if not self.colour or not code or not text:
            return text
        return f"\x1b[{code}m{text}{_RESET}"

    @property
    def block(self) -> str:
        return "█" if self.unicode else "#"

    @property
    def frame(self) -> tuple[str, str]:
        return ("▕", "▏") if self.unicode else ("|", "|")

    def branch(self, last: bool) -> str:
        if self.unicode:
            return "└─ " if last else "├─ "
        return "`- " if last else "|- "

    def stem(self, last: bool) -> str:
        return "   " if last else ("│  " if self.unicode else "|  ")

    @property
    def micro(self) -> str:
        return "µs" if self.unicode else "us"


def duration(ns: int, style: Style = Style()) -> str:
    if ns < 1_000_000:
        return f"{ns / 1000:.0f} {style.micro}"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e9:.2f} s"


def utc(ns: int) -> str:
    stamp = datetime.fromtimestamp(ns / 1e9, tz=UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def service_colours(services: Iterable[str]) -> dict[str, str]:
    """A stable colour per service, in order of first appearance."""
    ordered = list(dict.fromkeys(services))
    return {s: _SERVICE_COLOURS[i % len(_SERVICE_COLOURS)] for i, s in enumerate(ordered)}


@dataclass(frozen=True)
class Row:
    span: Span
    depth: int
    branch: str  # tree drawing before the span's name
    continuation: str  # tree drawing before the lines under it


def tree_rows(trace: Trace, style: Style = Style()) -> list[Row]:
    """Spans in waterfall order: depth-first, children by start time.

    A span whose parent is not in the trace (not exported, or dropped) is drawn as a
    root of its own rather than hidden.
    """
    ids = {s.span_id for s in trace.spans}
    children: dict[str, list[Span]] = {}
    for span in trace.spans:
        if span.parent_span_id in ids:
            children.setdefault(span.parent_span_id or "", []).append(span)
    for siblings in children.values():
        siblings.sort(key=lambda s: (s.start_ns, s.span_id))
    rows: list[Row] = []
    # Iterative depth-first walk: (span, depth, lead, is_last, is_root)
    stack: list[tuple[Span, int, str, bool, bool]] = [
        (root, 0, "", True, True) for root in reversed(trace.roots)
    ]
    while stack:
        span, depth, lead, last, root = stack.pop()
        branch = "" if root else lead + style.branch(last)
        below = "" if root else lead + style.stem(last)
        kids = children.get(span.span_id, [])
        rows.append(Row(span, depth, branch, below + (style.stem(False) if kids else "   ")))
        for i in reversed(range(len(kids))):
            stack.append((kids[i], depth + 1, below, i == len(kids) - 1, False))
    return rows


def bar(offset_ns: int, duration_ns: int, total_ns: int, style: Style) -> str:
    width = style.bar_width
    total = max(total_ns, 1)
    start = min(int(offset_ns * width / total), width - 1)
    end = min(max(math.ceil((offset_ns + duration_ns) * width / total), start + 1), width)
    return " " * start + style.block * (end - start) + " " * (width - end)


def _detail_text(items: Sequence[Detail], style: Style) -> str:
    return "  ".join(style.paint(d.text, _YELLOW if d.alarm else _DIM) for d in items)


def render_trace(trace: Trace, logs: Sequence[LogRecord], style: Style) -> str:
    total = trace.duration_ns
    colours = service_colours(trace.services)
    width = max((len(s) for s in trace.services), default=7)
    rows = tree_rows(trace, style)
    root = trace.roots[0]
    errors = trace.error_count
    head = (
        f"trace {trace.trace_id}  {root.service}: {root.name}  {duration(total, style)}  "
        f"{len(trace.spans)} spans, {len(trace.services)} services"
        + (f", {errors} failed" if errors else "")
        + f"  (started {utc(trace.start_ns)})"
    )
    left, right = style.frame
    end_label = duration(total, style)
    axis = "0" + end_label.rjust(style.bar_width - 1)
    lines = [
        style.paint(head, _BOLD if not errors else f"{_BOLD};{_RED}"),
        "",
        f"{'start':>10} {'duration':>9}  {' ' + axis + ' '}  {'service':<{width}}  span",
    ]
    indent = " " * (10 + 1 + 9 + 2 + style.bar_width + 2 + 2 + width + 2)
    for row in rows:
        span = row.span
        offset = span.start_ns - trace.start_ns
        colour = _RED if span.is_error else colours[span.service]
        kind = "" if span.kind is SpanKind.UNSPECIFIED else span.kind.value
        status = style.paint(" ERROR", f"{_BOLD};{_RED}") if span.is_error else ""
        name = style.paint(span.name, f"{_BOLD};{_RED}" if span.is_error else None)
        extra = _detail_text(details(span), style)
        if row.depth == 0 and span.parent_span_id is not None:
            extra = style.paint("(parent span not stored)", _DIM) + (f"  {extra}" if extra else "")
        lines.append(
            f"{'+' + duration(offset, style):>10} {duration(span.duration_ns, style):>9}  "
            f"{left}{style.paint(bar(offset, span.duration_ns, total, style), colour)}{right}  "
            f"{style.paint(span.service.ljust(width), colours[span.service])}  "
            f"{row.branch}{name}  {style.paint(kind, _DIM)}{status}"
            + (f"  {extra}" if extra else "")
        )
        for message in error_lines(span) if span.is_error else []:
            lines.append(indent + row.continuation + style.paint(f"! {message}", _RED))
    if logs:
        lines += ["", *render_logs(logs, trace, style)]
    return "\n".join(line.rstrip() for line in lines)


def _severity(severity: str, style: Style) -> str:
    short = {"WARNING": "WARN", "CRITICAL": "FATAL"}.get(severity, severity)
    return style.paint(f"{short:<5}", _SEVERITY_COLOURS.get(short))


def render_logs(logs: Sequence[LogRecord], trace: Trace | None, style: Style) -> list[str]:
    """Log lines in time order: offset into the trace (or UTC time), level, service, span."""
    spans = {s.span_id: s for s in trace.spans} if trace else {}
    colours = service_colours([*(trace.services if trace else []), *(r.service for r in logs)])
    width = max((len(r.service) for r in logs), default=7)
    title = f"log lines ({len(logs)})" if trace else f"log lines of no stored trace ({len(logs)})"
    lines = [style.paint(title, _BOLD)]
    for record in sorted(logs, key=lambda r: r.time_ns):
        when = (
            f"{'+' + duration(max(record.time_ns - trace.start_ns, 0), style):>10}"
            if trace
            else utc(record.time_ns)
        )
        span = spans.get(record.span_id or "")
        where = style.paint(f"[{span.name}]" if span else "[-]", _DIM)
        body_lines = record.body.strip().splitlines() or [""]
        more = (" …" if style.unicode else " ...") if len(body_lines) > 1 else ""
        body = body_lines[0] + more
        lines.append(
            f"{when}  {_severity(record.severity, style)}  "
            f"{style.paint(record.service.ljust(width), colours.get(record.service))}  "
            f"{where} {body}"
        )
    return lines


def render(
    correlation_id: str,
    traces: Sequence[Trace],
    logs: Sequence[LogRecord],
    style: Style,
) -> str:
    """The whole answer: each trace with its log lines, then any log line of no trace."""
    trace_ids = {t.trace_id for t in traces}
    blocks = []
    for trace in traces:
        own = [r for r in logs if r.trace_id == trace.trace_id]
        blocks.append(render_trace(trace, own, style))
    stray = [r for r in logs if r.trace_id not in trace_ids]
    if stray:
        blocks.append("\n".join(render_logs(stray, None, style)))
    title = f"exai.correlation_id={correlation_id}: {len(traces)} trace(s), {len(logs)} log line(s)"
    return "\n\n".join([style.paint(title, _BOLD), *blocks]) + "\n"
