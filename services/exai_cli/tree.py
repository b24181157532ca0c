"""A trace as the rows of its waterfall: depth-first, children by start time, and long
runs of alike siblings folded into one line.

A call that reads 400 conversation turns has 400 ``GET`` spans under one parent; drawn
one per line they push the rest of the trace off the screen. More than ``collapse_after``
siblings with the same name show the first ``collapse_after`` and one line for the rest,
counting their errors so a folded failure is never silent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from exai_cli.types import Span, Trace

DEFAULT_COLLAPSE_AFTER = 10


class TreeStyle(Protocol):
    def branch(self, last: bool) -> str: ...

    def stem(self, last: bool) -> str: ...


class _Lines:
    def branch(self, last: bool) -> str:
        return "└─ " if last else "├─ "

    def stem(self, last: bool) -> str:
        return "   " if last else "│  "


@dataclass(frozen=True)
class Row:
    span: Span
    depth: int
    branch: str  # tree drawing before the span's name
    continuation: str  # tree drawing before the lines under it


@dataclass(frozen=True)
class Folded:
    """Siblings of one name left out, with everything under them."""

    name: str
    spans: tuple[Span, ...]  # the folded siblings themselves
    below: int  # spans under them, folded with them
    errors: int  # failed spans among both
    depth: int
    branch: str

    @property
    def start_ns(self) -> int:
        return min(s.start_ns for s in self.spans)

    @property
    def end_ns(self) -> int:
        return max(s.end_ns for s in self.spans)


def _children(trace: Trace) -> dict[str, list[Span]]:
    ids = {s.span_id for s in trace.spans}
    children: dict[str, list[Span]] = {}
    for span in trace.spans:
        if span.parent_span_id in ids:
            children.setdefault(span.parent_span_id or "", []).append(span)
    for siblings in children.values():
        siblings.sort(key=lambda s: (s.start_ns, s.span_id))
    return children


def _subtree(span: Span, children: dict[str, list[Span]]) -> list[Span]:
    found, stack = [], list(children.get(span.span_id, []))
    while stack:
        child = stack.pop()
        found.append(child)
        stack += children.get(child.span_id, [])
    return found


def _fold(kids: list[Span], collapse_after: int | None) -> list[Span | tuple[str, list[Span]]]:
    """The siblings to draw, with each folded run as (name, spans) where it begins."""
    if collapse_after is None:
        return list(kids)
    counts = Counter(k.name for k in kids)
    seen: Counter[str] = Counter()
    items: list[Span | tuple[str, list[Span]]] = []
    folded: dict[str, list[Span]] = {}
    for kid in kids:
        seen[kid.name] += 1
        if counts[kid.name] <= collapse_after or seen[kid.name] <= collapse_after:
            items.append(kid)
        elif kid.name in folded:
            folded[kid.name].append(kid)
        else:
            folded[kid.name] = [kid]
            items.append((kid.name, folded[kid.name]))
    return items


def tree_rows(
    trace: Trace, style: TreeStyle | None = None, collapse_after: int | None = None
) -> list[Row | Folded]:
    """Rows in waterfall order. `collapse_after=None` draws every span (and only Rows).

    A span whose parent is not in the trace (not exported, or dropped) is drawn as a
    root of its own rather than hidden.
    """
    draw = style or _Lines()
    children = _children(trace)
    rows: list[Row | Folded] = []
    # Iterative depth-first walk: (item, depth, lead, is_last, is_root)
    stack: list[tuple[Span | tuple[str, list[Span]], int, str, bool, bool]] = [
        (root, 0, "", True, True) for root in reversed(trace.roots)
    ]
    while stack:
        item, depth, lead, last, root = stack.pop()
        branch = "" if root else lead + draw.branch(last)
        if isinstance(item, tuple):
            name, spans = item
            under = [s for span in spans for s in _subtree(span, children)]
            errors = sum(s.is_error for s in [*spans, *under])
            rows.append(Folded(name, tuple(spans), len(under), errors, depth, branch))
            continue
        below = "" if root else lead + draw.stem(last)
        kids = _fold(children.get(item.span_id, []), collapse_after)
        rows.append(Row(item, depth, branch, below + (draw.stem(False) if kids else "   ")))
        for i in reversed(range(len(kids))):
            stack.append((kids[i], depth + 1, below, i == len(kids) - 1, False))
    return rows


def span_rows(trace: Trace) -> Sequence[Row]:
    """Every span as a Row, in waterfall order (nothing folded)."""
    return [r for r in tree_rows(trace) if isinstance(r, Row)]
