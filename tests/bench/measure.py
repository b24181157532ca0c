"""Small helpers shared by the benchmarks: percentiles, RSS, interleaving, report lines.

Timings are only ever compared as ratios within one run: other work may share this
machine, so an absolute threshold would measure the neighbours, not the code. Two
variants A and B are interleaved (A B, B A, A B, …) so that a burst of outside load
hits both alike, and medians are compared rather than means.
"""

from __future__ import annotations

import gc
import math
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

# Stretch every bound on a loaded machine: EXAI_BENCH_SCALE=2 make bench. Ratio targets
# are loosened by this factor (lower bounds divided by it, upper bounds multiplied).
SCALE = float(os.environ.get("EXAI_BENCH_SCALE", "1"))


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (`fraction` in 0..1) of a non-empty sample."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


def p50(values: Sequence[float]) -> float:
    return statistics.median(values)


def p95(values: Sequence[float]) -> float:
    return percentile(values, 0.95)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}ms"


def report(name: str, **figures: object) -> None:
    """One line per benchmark figure set, easy to grep: `BENCH name key=value …`."""
    parts = " ".join(f"{key}={value}" for key, value in figures.items())
    print(f"\nBENCH {name}: {parts}", flush=True)


def rss_bytes() -> int:
    """This process's resident set size (VmRSS from /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def settled_rss() -> int:
    gc.collect()
    return rss_bytes()


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await call()
    return time.perf_counter() - start


async def interleaved(
    variants: Mapping[str, Callable[[], Awaitable[object]]], rounds: int
) -> dict[str, list[float]]:
    """Each variant once per round, in an order rotated every round; seconds per call."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        order = names[shift:] + names[:shift]
        if round_index % 2:
            order.reverse()
        for name in order:
            samples[name].append(await timed(variants[name]))
    return samples
