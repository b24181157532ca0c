"""Services as real processes for the out-of-process benchmarks (`make bench-peers`).

Each process can be pinned to CPU cores with `taskset` (when it exists), so that a
proxy under test gets one core and the load generator another, as a user comparing
proxies would run them. Output goes to a log file per process.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
CORES = os.cpu_count() or 1


def pinned(argv: Sequence[str], cores: str | None) -> list[str]:
    """`argv` run on `cores` ("0", "1", "0-1") when `taskset` exists and the core does."""
    if cores is None or shutil.which("taskset") is None:
        return list(argv)
    highest = max(int(part) for part in cores.replace("-", ",").split(","))
    if highest >= CORES:
        return list(argv)
    return ["taskset", "-c", cores, *argv]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, str] = field(default_factory=dict)

    def rss_bytes(self) -> int:
        """VmRSS of the process (the last one in a `taskset` chain is the same pid)."""
        status = Path(f"/proc/{self.popen.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for {self.name}")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.popen.pid)

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


class ProcessGroup:
    """Started processes, stopped in reverse order when the group closes."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.started: list[Process] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cores: str | None = None,
        ready_url: str | None = None,
        timeout_s: float = 60.0,
    ) -> Process:
        log = self.logs / f"{name}.log"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with log.open("wb") as out:
            popen = subprocess.Popen(
                pinned(argv, cores),
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
            )
        process = Process(name, popen, log)
        self.started.append(process)
        if ready_url is not None:
            wait_ready(process, ready_url, timeout_s)
        return process

    def close(self) -> None:
        for process in reversed(self.started):
            process.stop()
        self.started.clear()


@contextlib.contextmanager
def process_group(logs: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(logs)
    try:
        yield group
    finally:
        group.close()


def wait_ready(process: Process, url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited early:\n{process.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{process.name} not ready at {url} after {timeout_s}s:\n{process.tail()}")


def python_module(module: str) -> list[str]:
    """`python -m module` with this interpreter (the repo's .venv)."""
    return [sys.executable, "-m", module]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (/proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name, which may hold spaces: utime and stime are 14 and 15.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """VmRSS of any process by pid (servers started outside a ProcessGroup)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


BENCH_COLLECTOR_CONFIG = ROOT / "tests" / "bench" / "peers" / "otelcol-bench.yaml"


def start_bench_collector(
    group: ProcessGroup, telemetry_dir: Path, cores: str | None = None
) -> tuple[Process, str]:
    """Our collector build with the benchmark config (file exporters into
    `telemetry_dir`, emptied first); returns it and its OTLP/HTTP endpoint."""
    from tests.support.servers import free_port
    from tests.support.stack import load_stack_module

    telemetry_dir.mkdir(parents=True, exist_ok=True)
    for old in telemetry_dir.glob("*.jsonl"):
        old.unlink()
    otlp_port, health_port = free_port(), free_port()
    collector = group.start(
        "otelcol",
        [load_stack_module().tool("otelcol"), f"--config={BENCH_COLLECTOR_CONFIG}"],
        env={
            "EXAI_BENCH_OTLP_PORT": str(otlp_port),
            "EXAI_BENCH_HEALTH_PORT": str(health_port),
            "EXAI_BENCH_TELEMETRY_DIR": str(telemetry_dir),
        },
        cores=cores,
        ready_url=f"http://127.0.0.1:{health_port}/",
    )
    return collector, f"http://127.0.0.1:{otlp_port}"


def start_simulator(group: ProcessGroup, cores: str | None = None) -> tuple[Process, str]:
    """The llm-simulator with no latency and no token pacing, quiet, untraced; returns it
    and its base URL."""
    from tests.support.servers import free_port

    port = free_port()
    simulator = group.start(
        "llm-simulator",
        python_module("llm_simulator"),
        env={
            "EXAI_LOG_LEVEL": "WARNING",
            "EXAI_LLM_SIMULATOR_PORT": str(port),
            "SIM_LATENCY_MS": "0",
            "SIM_TOKENS_PER_S": "0",
            "EXAI_SIMULATOR_ADMIN_TOKEN": secrets.token_urlsafe(24),
            "OTEL_SDK_DISABLED": "true",
        },
        cores=cores,
        ready_url=f"http://127.0.0.1:{port}/health/ready",
    )
    return simulator, f"http://127.0.0.1:{port}"
