"""py-spy on a running service: where its CPU time goes, as a short top list."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

PY_SPY_VERSION = "0.4.3"
PY_SPY_VENV = Path.home() / ".cache" / "exai" / "peers" / f"py-spy-{PY_SPY_VERSION}"
TOP = 25

T = TypeVar("T")


def ensure_py_spy() -> Path:
    binary = PY_SPY_VENV / "bin" / "py-spy"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PY_SPY_VENV)], check=True)
        subprocess.run(
            [str(PY_SPY_VENV / "bin" / "pip"), "install", "-q", f"py-spy=={PY_SPY_VERSION}"],
            check=True,
        )
    return binary


def profile_during(pid: int, out: Path, work: Callable[[], T]) -> tuple[T, list[str]]:
    """Sample `pid` with py-spy while `work` runs; the top functions by own and by
    inclusive time (shares of the non-idle samples). The raw stacks stay in `out`."""
    raw = out.with_suffix(".raw")
    recorder = subprocess.Popen(
        [
            str(ensure_py_spy()),
            "record",
            "--pid",
            str(pid),
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(raw),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        result = work()
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        recorder.wait(30)
    lines = summarise_stacks(raw.read_text() if raw.exists() else "")
    out.write_text("\n".join(lines) + "\n")
    return result, lines


def summarise_stacks(collapsed: str) -> list[str]:
    """Top frames of py-spy's collapsed stacks (`frame;frame;… count` per line)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame for frame in stack.split(";") if frame]
        total += count
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if total == 0:
        return ["(no samples)"]
    out = [f"py-spy: {total} samples", "", "own time:"]
    out += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(TOP)]
    out += ["", "inclusive time:"]
    out += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(TOP)]
    return out
