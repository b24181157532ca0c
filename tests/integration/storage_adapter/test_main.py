"""`python -m storage_adapter`: starts from the environment, drains on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.storage_adapter.conftest import TIME_SCALE
from tests.support.internal_auth import STORAGE_TOKEN, TOKEN_ENV, bearer
from tests.support.servers import free_port

pytestmark = pytest.mark.integration

BACKEND_VARIABLES = ("EXAI_DATABASE_URL", "SUPABASE_URL", "SUPABASE_KEY", "REDIS_URL")


def environment(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in BACKEND_VARIABLES}
    env.update({"OTEL_SDK_DISABLED": "true", "PYTHONUNBUFFERED": "1", **TOKEN_ENV, **values})
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    return env


def test_serves_with_the_defaults_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "storage_adapter"],
        cwd=tmp_path,
        env=environment(EXAI_STORAGE_ADAPTER_PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60 * TIME_SCALE
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "not ready in time"
            time.sleep(0.1)
        assert set(ready.json()["components"]) == {"sqlite", "memory"}
        stored = httpx.post(
            f"http://127.0.0.1:{port}/v1/conversations/main-test/messages",
            json={"role": "user", "content": "hi", "idempotency_key": "k"},
            headers=bearer(STORAGE_TOKEN),
        )
        assert stored.status_code == 201
        # The default SQLite file lives under ./var relative to the working directory.
        assert (tmp_path / "var" / "exai.db").exists()
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60 * TIME_SCALE)[0].decode()
    # uvicorn re-raises the signal once it has shut down cleanly.
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert f"durable store: sqlite at {tmp_path / 'var' / 'exai.db'}" in output


def test_bad_setting_stops_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "storage_adapter"],
        cwd=tmp_path,
        env=environment(EXAI_DATABASE_URL="mysql://user:pw-secret@db/x"),
        capture_output=True,
        timeout=60 * TIME_SCALE,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "EXAI_DATABASE_URL" in lines[0]
    assert "pw-secret" not in result.stderr.decode()
