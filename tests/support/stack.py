"""Start the no-Docker stack (deploy/local-stack/stack.py) for end-to-end tests."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


def load_stack_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "exai_local_stack", ROOT / "deploy" / "local-stack" / "stack.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve annotations through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_ready(proc: Any, popen: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{proc.name} exited with {popen.returncode}:\n{tail}")
        with contextlib.suppress(httpx.HTTPError, OSError):
            if proc.ready_url is not None:
                if httpx.get(proc.ready_url, timeout=1.0).status_code == 200:
                    return
            elif proc.port is not None:
                with socket.create_connection(("127.0.0.1", proc.port), 0.5):
                    return
            else:
                return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:]
    raise TimeoutError(f"{proc.name} not ready after {timeout_s}s:\n{tail}")


@dataclass
class StackProcess:
    """One process of the running stack, as started (its command can be run again)."""

    proc: Any  # deploy/local-stack/stack.py's Proc
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes]
    log_file: IO[bytes]

    @classmethod
    def start(cls, proc: Any, env: dict[str, str], log_path: Path, mode: str) -> StackProcess:
        log_file = log_path.open(mode)
        popen = subprocess.Popen(
            proc.argv, env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT
        )
        return cls(proc, env, log_path, popen, log_file)

    @property
    def pid(self) -> int:
        """The service's own process: Postgres runs as a child of `runuser` when the
        tests run as root, and a signal to runuser would not reach it."""
        pid = self.popen.pid
        if self.proc.argv[0] == "runuser":
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            if children:
                return int(children[0])
        return pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
        try:
            self.popen.wait(20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)
        self.log_file.close()


@dataclass
class RunningStack:
    var: Path
    env: Mapping[str, str]
    ws_token: str
    processes: dict[str, StackProcess] = field(default_factory=dict)

    def log(self, name: str) -> str:
        return (self.var / "logs" / f"{name}.log").read_text(errors="replace")

    def kill(self, name: str, signum: int = signal.SIGKILL, timeout_s: float = 30) -> None:
        """Send `signum` (kill -9 by default) to one process and wait until it is gone.
        Nothing here restarts it: the fault suite does, with :meth:`restart`."""
        running = self.processes[name]
        os.kill(running.pid, signum)
        running.popen.wait(timeout_s)

    def restart(
        self, name: str, timeout_s: float = 90, env: Mapping[str, str] | None = None
    ) -> None:
        """Start a stopped process again with the same command and environment (its log
        continues), or with `env` instead, and wait until it is ready."""
        old = self.processes[name]
        if old.popen.poll() is None:
            raise RuntimeError(f"{name} is still running")
        old.log_file.close()
        new = StackProcess.start(
            old.proc, dict(old.env if env is None else env), old.log_path, "ab"
        )
        self.processes[name] = new
        _wait_ready(new.proc, new.popen, new.log_path, timeout_s)


PORTS = (4317, 4318, 8079, 8090, 8091, 8099, 9090, 9093, 13133, 14317, 16686, 6379, 5432)


@contextlib.contextmanager
def local_stack(var: Path, overrides: Mapping[str, str]) -> Iterator[RunningStack]:
    busy = [p for p in PORTS if _port_in_use(p)]
    if busy:
        raise RuntimeError(f"ports already in use (is `make run` running?): {busy}")
    stack = load_stack_module()
    procs = stack.processes(var, overrides)
    logs = var / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    running = RunningStack(var, overrides, overrides["EXAI_WS_TOKEN"])
    try:
        for proc in procs:
            log_path = logs / f"{proc.name}.log"
            env = {**os.environ, **proc.env, **overrides}
            started = running.processes[proc.name] = StackProcess.start(proc, env, log_path, "wb")
            _wait_ready(proc, started.popen, log_path, timeout_s=90)
        yield running
    finally:
        for started in reversed(list(running.processes.values())):
            started.stop()
