"""Real Redis and Postgres servers on loopback, started per test session.

Binaries come from Debian packages (`.ci/run` installs them). Postgres refuses to run
as root, so when the tests run as root the server runs as the `postgres` user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Debian keeps one folder per major version off PATH; the newest installed wins (as in
# deploy/local-stack/stack.py and the check in deploy/local-stack/ensure-deps.sh).
PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


class MissingServerError(RuntimeError):
    """A server binary the tests need is not installed."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s}s")


@dataclass
class RedisServer:
    url: str
    port: int
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)

    def start_again(self) -> None:
        """Restart on the same port (tests that take Redis down and bring it back)."""
        self.process = _spawn_redis(self.port)
        wait_for_port(self.port)


def _spawn_redis(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise MissingServerError("redis-server not installed (apt-get install redis-server)")
    return subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    port = free_port()
    server = RedisServer(f"redis://127.0.0.1:{port}/0", port, _spawn_redis(port))
    try:
        wait_for_port(port)
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()


def _pg_bin(name: str) -> str:
    for directory in PG_BIN_DIRS:
        if (directory / name).exists():
            return str(directory / name)
    found = shutil.which(name)
    if found is None:
        raise MissingServerError(f"{name} not installed (apt-get install postgresql)")
    return found


def _as_postgres_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@dataclass
class PostgresServer:
    dsn: str
    port: int
    data_dir: Path


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    port = free_port()
    root = Path(tempfile.mkdtemp(prefix="exai-pg-"))
    data_dir = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    subprocess.run(
        _as_postgres_user(
            [_pg_bin("initdb"), "-D", str(data_dir), "-U", "exai", "--auth=trust", "-E", "UTF8"]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    process = subprocess.Popen(
        _as_postgres_user(
            [
                _pg_bin("postgres"),
                "-D",
                str(data_dir),
                "-p",
                str(port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={root}",
                "-c",
                "fsync=off",
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        subprocess.run(
            [_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "exai", "exai"],
            check=True,
        )
        yield PostgresServer(f"postgresql://exai@127.0.0.1:{port}/exai", port, data_dir)
    finally:
        process.terminate()
        process.wait(20)
        shutil.rmtree(root, ignore_errors=True)
