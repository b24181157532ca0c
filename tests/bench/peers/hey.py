"""`hey`, the HTTP load generator: installed with `go install`, run, its summary parsed."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

HEY_VERSION = "0.1.5"
HEY_DIR = Path.home() / ".cache" / "exai" / "tools" / f"hey-{HEY_VERSION}"


def ensure_hey() -> Path:
    """The `hey` binary, built once into the tool cache (keyed by version)."""
    binary = HEY_DIR / "hey"
    if not binary.exists():
        print(f"[bench-peers] go install github.com/rakyll/hey@v{HEY_VERSION}", flush=True)
        subprocess.run(
            ["go", "install", f"github.com/rakyll/hey@v{HEY_VERSION}"],
            env={**os.environ, "GOBIN": str(HEY_DIR)},
            check=True,
        )
    return binary


@dataclass(frozen=True)
class LoadResult:
    responses: int  # answered, with any status
    ok: int  # 200 responses
    transport_errors: int  # no answer at all (refused, reset, timed out)
    rps: float
    p50_s: float
    p99_s: float

    @property
    def errors(self) -> int:
        return self.responses - self.ok + self.transport_errors

    @property
    def error_share(self) -> float:
        return self.errors / max(1, self.responses + self.transport_errors)


_STATUS = re.compile(r"^\s*\[(\d{3})\]\s+(\d+) responses", re.MULTILINE)
_ERROR = re.compile(r"^\s*\[(\d+)\]\s+\S", re.MULTILINE)


def parse_summary(text: str) -> LoadResult:
    """hey's default summary: Requests/sec, the latency distribution, status codes and
    the error distribution (transport errors, counted per message)."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if rps is None:
        raise ValueError(f"no Requests/sec in hey's output:\n{text[-2000:]}")
    percentiles = {int(p): float(v) for p, v in re.findall(r"(\d+)%+ in ([\d.]+) secs", text)}
    statuses = {int(code): int(count) for code, count in _STATUS.findall(text)}
    transport = 0
    if "Error distribution:" in text:
        tail = text.split("Error distribution:", 1)[1]
        transport = sum(int(count) for count in _ERROR.findall(tail))
    return LoadResult(
        responses=sum(statuses.values()),
        ok=statuses.get(200, 0),
        transport_errors=transport,
        rps=float(rps.group(1)),
        p50_s=percentiles.get(50, float("nan")),
        p99_s=percentiles.get(99, float("nan")),
    )


def run_hey(
    hey: Path,
    url: str,
    body: str,
    *,
    concurrency: int,
    duration_s: float,
    headers: dict[str, str],
    cores: list[str],
) -> LoadResult:
    argv = [
        str(hey),
        "-z",
        f"{duration_s:g}s",
        "-c",
        str(concurrency),
        "-m",
        "POST",
        "-T",
        "application/json",
        "-d",
        body,
        "-t",
        "30",
        "-cpus",
        "1",
    ]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    out = subprocess.run(
        [*cores, *argv, url], capture_output=True, text=True, check=True, timeout=duration_s + 60
    )
    return parse_summary(out.stdout)
