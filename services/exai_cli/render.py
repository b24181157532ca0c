"""The terminal waterfall: every span of a trace as a tree, on one time axis.

::

       start  duration   0                          2.61 s
      +0 µs    2.61 s  ▕██████████████████████████▏ ws-gateway      ws call_tool chat  server  …
    +1.2 ms   15.0 ms  ▕█                         ▏ ws-gateway      ├─ GET  client  …

Then the trace's log lines in time order, each with the span it was logged in (see
:mod:`exai_cli.logview`). Colour (one per service; errors and alarming attributes in
red/yellow) only when asked: the caller decides from the TTY and ``NO_COLOR``. Pure:
strings in, a string out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from exai_cli.logview import render_logs
from exai_cli.skew import skews
from exai_cli.style import BOLD, DIM, RED, YELLOW, Style, duration, service_colours, signed, utc
from exai_cli.summary import Detail, details, error_lines
from exai_cli.tree import DEFAULT_COLLAPSE_AFTER, Folded, Row, tree_rows
from exai_cli.types import LogRecord, SpanKind, Trace

__all__ = ["Style", "View", "bar", "duration", "render", "render_trace"]


@dataclass(frozen=True)
class View:
    """What the caller decides beyond the data: folding, links, incompleteness notes."""

    collapse_after: int | None = DEFAULT_COLLAPSE_AFTER  # None: every span
    links: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # trace ID → name → URL
    truncated: Sequence[str] = ()  # why the answer may be incomplete


def bar(offset_ns: int, duration_ns: int, total_ns: int, style: Style) -> str:
    width = style.bar_width
    total = max(total_ns, 1)
    start = min(int(offset_ns * width / total), width - 1)
    end = min(max(math.ceil((offset_ns + duration_ns) * width / total), start + 1), width)
    return " " * start + style.block * (end - start) + " " * (width - end)


def _detail_text(items: Sequence[Detail], style: Style) -> str:
    return "  ".join(style.paint(d.text, YELLOW if d.alarm else DIM) for d in items)


def _skew_detail(skew_ns: int | None, style: Style) -> list[Detail]:
    return [Detail(f"skew {signed(skew_ns, style)}", alarm=True)] if skew_ns else []


class _Lines:
    """One trace's rows drawn against its time axis."""

    def __init__(self, trace: Trace, style: Style) -> None:
        self.trace = trace
        self.style = style
        self.colours = service_colours(trace.services)
        self.width = max((len(s) for s in trace.services), default=7)
        self.skews = skews(trace)

    def columns(self, start_ns: int, duration_ns: int, colour: str, service: str) -> str:
        style, trace = self.style, self.trace
        offset = start_ns - trace.start_ns
        left, right = style.frame
        drawn = style.paint(bar(offset, duration_ns, trace.duration_ns, style), colour)
        return (
            f"{'+' + duration(offset, style):>10} {duration(duration_ns, style):>9}  "
            f"{left}{drawn}{right}  "
            f"{style.paint(service.ljust(self.width), self.colours[service])}  "
        )

    def span(self, row: Row) -> list[str]:
        style, span = self.style, row.span
        kind = "" if span.kind is SpanKind.UNSPECIFIED else span.kind.value
        status = style.paint(" ERROR", f"{BOLD};{RED}") if span.is_error else ""
        name = style.paint(span.name, f"{BOLD};{RED}" if span.is_error else None)
        items = [*_skew_detail(self.skews.get(span.span_id), style), *details(span)]
        extra = _detail_text(items, style)
        if row.depth == 0 and span.parent_span_id is not None:
            extra = style.paint("(parent span not stored)", DIM) + (f"  {extra}" if extra else "")
        colour = RED if span.is_error else self.colours[span.service]
        lines = [
            self.columns(span.start_ns, span.duration_ns, colour, span.service)
            + f"{row.branch}{name}  {style.paint(kind, DIM)}{status}"
            + (f"  {extra}" if extra else "")
        ]
        indent = " " * (10 + 1 + 9 + 2 + style.bar_width + 2 + 2 + self.width + 2)
        for message in error_lines(span) if span.is_error else []:
            first, *rest = message.splitlines() or [""]
            lines.append(indent + row.continuation + style.paint(f"! {first}", RED))
            lines += [indent + row.continuation + "  " + style.paint(m, RED) for m in rest]
        return lines

    def folded(self, row: Folded) -> str:
        style = self.style
        service = row.spans[0].service
        under = f", {row.below} spans under them" if row.below else ""
        errors = f"{row.errors} error{'s' if row.errors != 1 else ''}"
        text = f"{style.ellipsis} {len(row.spans)} more `{row.name}` spans ({errors}{under})"
        return (
            self.columns(
                row.start_ns, row.end_ns - row.start_ns, RED if row.errors else DIM, service
            )
            + row.branch
            + style.paint(text, YELLOW if row.errors else DIM)
        )


def _head(trace: Trace, style: Style) -> str:
    root = trace.roots[0]
    errors = trace.error_count
    skewed = len(skews(trace))
    return (
        f"trace {trace.trace_id}  {root.service}: {root.name}  "
        f"{duration(trace.duration_ns, style)}  "
        f"{len(trace.spans)} spans, {len(trace.services)} services"
        + (f", {errors} failed" if errors else "")
        + (f", clock skew on {skewed}" if skewed else "")
        + f"  (started {utc(trace.start_ns)})"
    )


def render_trace(trace: Trace, logs: Sequence[LogRecord], style: Style, view: View = View()) -> str:
    draw = _Lines(trace, style)
    head = _head(trace, style)
    axis = "0" + duration(trace.duration_ns, style).rjust(style.bar_width - 1)
    lines = [style.paint(head, BOLD if not trace.error_count else f"{BOLD};{RED}")]
    lines += [f"open in {name}: {url}" for name, url in view.links.get(trace.trace_id, {}).items()]
    lines += [
        "",
        f"{'start':>10} {'duration':>9}  {' ' + axis + ' '}  {'service':<{draw.width}}  span",
    ]
    for row in tree_rows(trace, style, view.collapse_after):
        if isinstance(row, Folded):
            lines.append(draw.folded(row))
        else:
            lines += draw.span(row)
    if logs:
        lines += ["", *render_logs(logs, trace, style)]
    return "\n".join(line.rstrip() for line in lines)


def render(
    subject: str,
    traces: Sequence[Trace],
    logs: Sequence[LogRecord],
    style: Style,
    view: View = View(),
) -> str:
    """The whole answer: each trace with its log lines, then any log line of no trace.

    `subject` names what was asked for (``exai.correlation_id=…``).
    """
    trace_ids = {t.trace_id for t in traces}
    blocks = []
    for trace in traces:
        own = [r for r in logs if r.trace_id == trace.trace_id]
        blocks.append(render_trace(trace, own, style, view))
    stray = [r for r in logs if r.trace_id not in trace_ids]
    if stray:
        blocks.append("\n".join(render_logs(stray, None, style)))
    title = style.paint(f"{subject}: {len(traces)} trace(s), {len(logs)} log line(s)", BOLD)
    notes = [style.paint(f"TRUNCATED: {note}", f"{BOLD};{YELLOW}") for note in view.truncated]
    return "\n\n".join(["\n".join([title, *notes]), *blocks]) + "\n"
