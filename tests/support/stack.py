"""Start the no-Docker stack (deploy/local-stack/stack.py) for end-to-end tests."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
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
class RunningStack:
    var: Path
    env: Mapping[str, str]
    ws_token: str

    def log(self, name: str) -> str:
        return (self.var / "logs" / f"{name}.log").read_text(errors="replace")


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
    started: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []
    try:
        for proc in procs:
            log_path = logs / f"{proc.name}.log"
            log_file = log_path.open("wb")
            env = {**os.environ, **proc.env, **overrides}
            popen = subprocess.Popen(
                proc.argv, env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT
            )
            started.append((popen, log_file))
            _wait_ready(proc, popen, log_path, timeout_s=90)
        yield RunningStack(var, overrides, overrides["EXAI_WS_TOKEN"])
    finally:
        for popen, log_file in reversed(started):
            if popen.poll() is None:
                popen.terminate()
            try:
                popen.wait(20)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(5)
            log_file.close()
