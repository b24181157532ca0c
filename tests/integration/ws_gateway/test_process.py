"""`python -m ws_gateway` as a real process: start-up checks, SIGTERM drain, JSON logs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.integration.ws_gateway.stack import TIME_SCALE, TOKEN
from tests.support.internal_auth import PROVIDER_TOKEN, STORAGE_TOKEN
from tests.support.servers import free_port, wait_for_port

pytestmark = pytest.mark.integration


def clean_env(**extra: str) -> dict[str, str]:
    """No EXAI_/OTEL_ settings but the internal tokens every deployment has."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXAI_", "OTEL_"))}
    internal = {"EXAI_PROVIDER_TOKEN": PROVIDER_TOKEN, "EXAI_STORAGE_TOKEN": STORAGE_TOKEN}
    return {**env, **internal, **extra}


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ws_gateway"],
        env=clean_env(EXAI_WS_TOKEN=TOKEN, EXAI_WS_PORT=str(port), EXAI_SHUTDOWN_GRACE_S="5"),
        cwd=tmp_path,  # no stray .env
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, 20 * TIME_SCALE)
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if process.stdout:
            process.stdout.close()
        if process.stderr:
            process.stderr.close()


async def test_sigterm_closes_connections_with_1001_and_exits_cleanly(
    gateway_process: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = gateway_process
    async with httpx.AsyncClient(timeout=5) as client:
        live = await client.get(f"http://127.0.0.1:{port}/health/live")
    assert live.status_code == 200
    async with connect(f"ws://127.0.0.1:{port}/?token={TOKEN}") as ws:
        await ws.send(json.dumps({"op": "hello", "token": TOKEN}))
        assert json.loads(await ws.recv())["ok"] is True
        process.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10 * TIME_SCALE)
        assert ws.close_code == 1001
    returncode = await asyncio.to_thread(process.wait, 10 * TIME_SCALE)
    assert returncode == 0
    stdout, stderr = process.communicate()
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    messages = [line["message"] for line in lines]
    assert any(m.startswith("ws-gateway listening on") for m in messages)
    assert any(m.startswith("shutting down") for m in messages)
    assert "ws-gateway stopped" in messages
    assert all(
        line["service"] == "ws-gateway" and line["timestamp"].endswith("+00:00") for line in lines
    )
    assert TOKEN not in stdout and TOKEN not in stderr


def test_a_missing_token_stops_start_up_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ws_gateway"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: invalid setting EXAI_WS_TOKEN: Value error, required: set EXAI_WS_TOKEN "
        "(client 'default'), EXAI_WS_TOKENS or EXAI_WS_TOKENS_FILE"
    ]


def test_a_port_in_use_stops_start_up_with_one_line(
    gateway_process: tuple[subprocess.Popen[str], int], tmp_path: Path
) -> None:
    _, port = gateway_process
    result = subprocess.run(
        [sys.executable, "-m", "ws_gateway"],
        env=clean_env(EXAI_WS_TOKEN=TOKEN, EXAI_WS_PORT=str(port)),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"error: cannot listen on 127.0.0.1:{port}")
    assert len(result.stderr.strip().splitlines()) == 1
