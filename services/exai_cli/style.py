"""How the terminal output is drawn: colour only when asked, ASCII when the terminal's
encoding cannot do better, and the number formats every view shares."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

RESET = "\x1b[0m"
BOLD, DIM, RED, YELLOW = "1", "2", "31", "33"
_SERVICE_COLOURS = ("36", "35", "34", "32", "96", "95", "94", "92")
DEFAULT_BAR_WIDTH = 32


@dataclass(frozen=True)
class Style:
    colour: bool = False
    unicode: bool = True
    bar_width: int = DEFAULT_BAR_WIDTH

    def paint(self, text: str, code: str | None) -> str:
        if not self.colour or not code or not text:
            return text
        return f"\x1b[{code}m{text}{RESET}"

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

    @property
    def ellipsis(self) -> str:
        return "…" if self.unicode else "..."


def duration(ns: int, style: Style = Style()) -> str:
    if ns < 1_000_000:
        return f"{ns / 1000:.0f} {style.micro}"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e9:.2f} s"


def signed(ns: int, style: Style = Style()) -> str:
    """`+12.0 ms` / `-3.0 ms`: an offset that may point backwards (clock skew)."""
    return ("-" if ns < 0 else "+") + duration(abs(ns), style)


def utc(ns: int) -> str:
    stamp = datetime.fromtimestamp(ns / 1e9, tz=UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def service_colours(services: Iterable[str]) -> dict[str, str]:
    """A stable colour per service, in order of first appearance."""
    ordered = list(dict.fromkeys(services))
    return {s: _SERVICE_COLOURS[i % len(_SERVICE_COLOURS)] for i, s in enumerate(ordered)}
