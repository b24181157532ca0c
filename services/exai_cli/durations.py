"""Durations as people type them (`--since 15m`) and as the collector's config writes them.

The collector parses ``decision_wait`` with Go's ``time.ParseDuration`` (``5s``,
``300ms``, ``2m10s``, ``1.5h``), and the CLI reads the same ``EXAI_TAIL_DECISION_WAIT``
value, so it accepts exactly that syntax too.
"""

from __future__ import annotations

import argparse
import re

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Go's units; longest first so "ms" is not read as "m" then "s".
_GO_UNITS_S = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """`90`, `90s`, `15m`, `1h`, `2d` → seconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 15m, 1h, 2d)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def parse_go_duration(text: str) -> float:
    """A Go duration (the collector's syntax: `5s`, `300ms`, `2m10s`, `0`) → seconds."""
    value = text.strip()
    if value in ("0", "+0", "-0"):
        return 0.0
    body = value.removeprefix("+")
    seconds = 0.0
    position = 0
    for match in _GO_PART.finditer(body):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _GO_UNITS_S[match.group(2)]
        position = match.end()
    if position == 0 or position != len(body):
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (the collector's syntax: 5s, 300ms, 2m10s)"
        )
    return seconds


def human_duration(seconds: float) -> str:
    """The largest whole unit: 3600 → `1h`, 90 → `90s`."""
    for unit in ("d", "h", "m"):
        if seconds >= _UNIT_S[unit] and seconds % _UNIT_S[unit] == 0:
            return f"{seconds / _UNIT_S[unit]:g}{unit}"
    return f"{seconds:g}s"
