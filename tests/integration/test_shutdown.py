"""SIGTERM drains in-flight calls and flushes telemetry before the grace period ends.

Every service runs as a real process (`python -m <service>`) exporting OTLP/HTTP to a
real receiver started by the test (:mod:`tests.support.otlp`). For each: a long call is
started (simulator latency and stream pace through `POST /admin/latency`, or a SQLite
write lock held by the test), SIGTERM arrives while it runs, and then

- the call completes successfully (a stream to its `[DONE]`, a write to its row),
- new work is refused (the listening socket is closed),
- the process exits 0, well within `EXAI_SHUTDOWN_GRACE_S`,
- the drained call's spans and the final metric export reached the receiver before
  the process exited.

A collector that never answers must not hold the process past its flush bound
(`EXAI_TELEMETRY_FLUSH_S`): Docker would SIGKILL it at `stop_grace_period`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.integration.ws_gateway.stack import TOKEN, NativeClient, final
from tests.support.internal_auth import (
    PROVIDER_TOKEN,
    STORAGE_TOKEN,
    TOKEN_ENV,
    SimulatorAdminAuth,
    bearer,
)
from tests.support.otlp import BlackHole, OtlpReceiver, attributes, wait_until
from tests.support.servers import free_port
from tests.support.sse import chunks, streamed_text

pytestmark = pytest.mark.integration

TIME_SCALE = float(os.environ.get("EXAI_TEST_TIME_SCALE", "1"))
GRACE_S = 10.0
# Bounds the final export; the exports to a live receiver take milliseconds.
FLUSH_S = 3.0
MODEL = "kimi-k2-0905-preview"
# Long enough for the answer to stream for a few seconds at STREAM_TOKENS_PER_S.
PROMPT = "Please describe, in a few sentences, how a graceful shutdown drains calls."
STREAM_TOKENS_PER_S = 15
LATENCY_MS = 2000


def service_env(**extra: str) -> dict[str, str]:
    """A clean environment: nothing from the developer's EXAI_/OTEL_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXAI_", "OTEL_", "SIM_"))}
    env.update(TOKEN_ENV)
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "EXAI_SHUTDOWN_GRACE_S": str(GRACE_S),
            "EXAI_TELEMETRY_FLUSH_S": str(FLUSH_S),
            # The longest the SDK may hold a finished span: what is still queued at
            # SIGTERM is exported by the shutdown flush, not by the schedule.
            "OTEL_BSP_SCHEDULE_DELAY": "2000",
        }
    )
    env.update(extra)
    return env


@dataclass
class ServiceProcess:
    name: str
    popen: subprocess.Popen[bytes]
    port: int
    log_path: Path
    sigterm_at: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def flush_s(self) -> float:
        """How long the final telemetry export took (the service logs it)."""
        found = re.search(r"telemetry flushed in (\d+\.\d+)s", self.log())
        assert found, f"{self.name}: no complete telemetry flush logged\n{self.log()}"
        return float(found.group(1))

    def terminate(self) -> None:
        self.sigterm_at = time.monotonic()
        self.popen.send_signal(signal.SIGTERM)

    async def exit(self, timeout_s: float) -> tuple[int, float]:
        """Return code and seconds from SIGTERM to exit."""
        code = await asyncio.to_thread(self.popen.wait, timeout_s)
        return code, time.monotonic() - self.sigterm_at

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)


@contextlib.contextmanager
def service(
    module: str, port_variable: str, tmp_path: Path, **env: str
) -> Iterator[ServiceProcess]:
    port = free_port()
    log_path = tmp_path / f"{module}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", module],
            env=service_env(**{port_variable: str(port)}, **env),
            cwd=tmp_path,  # no stray .env; SQLite under tmp_path/var
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    process = ServiceProcess(module, popen, port, log_path)
    try:
        _wait_live(process, 60 * TIME_SCALE)
        yield process
    finally:
        process.stop()


def _wait_live(process: ServiceProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.popen.poll() is None, process.log()
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{process.url}/health/live", timeout=1).status_code == 200:
                return
        assert time.monotonic() < deadline, f"{process.name} not live:\n{process.log()}"
        time.sleep(0.05)


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
    except OSError:
        return True
    return False


async def wait_refused(process: ServiceProcess) -> None:
    """New work is refused while the drained calls still run."""
    await asyncio.to_thread(
        wait_until, lambda: refuses_connections(process.port), 2 * TIME_SCALE, "refusal"
    )


@dataclass
class Simulator:
    process: ServiceProcess

    @property
    def url(self) -> str:
        return self.process.url

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        async with httpx.AsyncClient(
            base_url=self.url, auth=SimulatorAdminAuth(), timeout=5
        ) as client:
            response = await client.request(method, path, json=body)
            response.raise_for_status()
            return response.json()

    async def requests(self) -> int:
        stats = await self.admin("GET", "/admin/stats")
        return sum(stats["requests"].values())

    async def wait_requests(self, count: int) -> None:
        deadline = time.monotonic() + 10 * TIME_SCALE
        while await self.requests() < count:
            assert time.monotonic() < deadline, "the simulator never saw the call"
            await asyncio.sleep(0.02)


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Simulator]:
    with service(
        "llm_simulator", "EXAI_LLM_SIMULATOR_PORT", tmp_path, OTEL_SDK_DISABLED="true"
    ) as process:
        yield Simulator(process)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def exported_by(receiver: OtlpReceiver, service_name: str, exited_at: float) -> None:
    """Sanity: everything the assertions read arrived before the process had exited."""
    for arrived, _ in receiver.spans(service_name):
        assert arrived <= exited_at


def spans_with(receiver: OtlpReceiver, service_name: str, correlation_id: str) -> list[Any]:
    return [
        span
        for _, span in receiver.spans(service_name)
        if attributes(span.attributes).get("exai.correlation_id") == correlation_id
    ]


def final_points(
    receiver: OtlpReceiver, service_name: str, metric: str, after: float
) -> list[dict[str, Any]]:
    """Attributes and counts of `metric` in the exports that arrived after SIGTERM."""
    return [
        {
            **attributes(point.attributes),
            "count": getattr(point, "count", None),
            "value": getattr(point, "as_int", 0) or getattr(point, "as_double", 0),
        }
        for arrived, point in receiver.metric_points(service_name, metric)
        if arrived >= after
    ]


def proxy_request(correlation_id: str, *, stream: bool) -> dict[str, Any]:
    return {
        "json": {
            "model": MODEL,
            "messages": [{"role": "user", "content": f"{PROMPT} ({correlation_id})"}],
            "stream": stream,
        },
        "headers": {**bearer(PROVIDER_TOKEN), "X-Correlation-ID": correlation_id},
    }


async def test_provider_proxy_drains_completions_and_streams_then_flushes(
    simulator: Simulator, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    await simulator.admin("POST", "/admin/latency", {"ms": 0, "tokens_per_s": STREAM_TOKENS_PER_S})
    with service(
        "provider_proxy",
        "EXAI_PROVIDER_PROXY_PORT",
        tmp_path,
        EXAI_SIMULATOR_URL=simulator.url,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
    ) as proxy:
        async with httpx.AsyncClient(base_url=proxy.url, timeout=30 * TIME_SCALE) as client:
            first_chunk = asyncio.Event()

            async def streamed() -> list[str]:
                request = proxy_request("drain-stream", stream=True)
                async with client.stream("POST", "/v1/chat/completions", **request) as response:
                    assert response.status_code == 200
                    payloads = []
                    async for line in response.aiter_lines():
                        if line.startswith("data: "):
                            payloads.append(line.removeprefix("data: "))
                            first_chunk.set()
                    return payloads

            # A stream that is mid-answer at SIGTERM, and a completion still waiting
            # for the (slow) upstream's first byte.
            stream_task = asyncio.create_task(streamed())
            await asyncio.wait_for(first_chunk.wait(), 10 * TIME_SCALE)
            await simulator.admin("POST", "/admin/latency", {"ms": LATENCY_MS})
            plain_task = asyncio.create_task(
                client.post("/v1/chat/completions", **proxy_request("drain-plain", stream=False))
            )
            await simulator.wait_requests(2)
            proxy.terminate()
            await wait_refused(proxy)
            assert not plain_task.done() and not stream_task.done()

            plain = await plain_task
            assert plain.status_code == 200, plain.text
            assert plain.json()["choices"][0]["message"]["content"]
            payloads = await stream_task
            assert streamed_text(chunks(payloads))  # complete: ends with [DONE]
            drained = time.monotonic() - proxy.sigterm_at

        code, elapsed = await proxy.exit(GRACE_S + FLUSH_S + 5)
        exited_at = time.monotonic()
    print(
        f"provider-proxy: drained call done {drained:.2f}s after SIGTERM,"
        f" exit after {elapsed:.2f}s, flush {proxy.flush_s():.3f}s"
    )
    assert code == 0, proxy.log()
    assert elapsed < GRACE_S, proxy.log()
    exported_by(receiver, "provider-proxy", exited_at)
    for correlation_id in ("drain-stream", "drain-plain"):
        names = {span.name for span in spans_with(receiver, "provider-proxy", correlation_id)}
        assert "POST /v1/chat/completions" in names, (correlation_id, names)
        assert any(name.startswith("chat ") for name in names), names
    # The final export, after SIGTERM, counts both drained calls.
    points = final_points(
        receiver, "provider-proxy", "gen_ai.client.operation.duration", proxy.sigterm_at
    )
    assert sum(p["count"] for p in points if "error.type" not in p) >= 2, points


async def test_storage_adapter_finishes_inflight_writes_then_flushes(
    receiver: OtlpReceiver, tmp_path: Path
) -> None:
    database = tmp_path / "exai.db"
    with service(
        "storage_adapter",
        "EXAI_STORAGE_ADAPTER_PORT",
        tmp_path,
        EXAI_SQLITE_PATH=str(database),
        EXAI_DB_TIMEOUT_S="30",  # the write waits for the test's lock, not a timeout
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
    ) as storage:
        async with httpx.AsyncClient(
            base_url=storage.url, headers=bearer(STORAGE_TOKEN), timeout=30 * TIME_SCALE
        ) as client:
            created = await client.post("/v1/conversations", json={"continuation_id": "drain-1"})
            assert created.status_code in (200, 201), created.text
            # The test holds SQLite's write lock: the write below is in flight at SIGTERM.
            lock = sqlite3.connect(database, timeout=5, isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")
            try:
                write = asyncio.create_task(
                    client.post(
                        "/v1/conversations/drain-1/messages",
                        json={"role": "user", "content": "kept", "idempotency_key": "drain-k1"},
                        headers={"X-Correlation-ID": "drain-write"},
                    )
                )
                await asyncio.sleep(0.5 * TIME_SCALE)  # the request is waiting on the lock
                storage.terminate()
                await wait_refused(storage)
                await asyncio.sleep(0.5 * TIME_SCALE)
                assert not write.done()
            finally:
                lock.execute("COMMIT")
                lock.close()
            stored = await write
            assert stored.status_code == 201, stored.text
            drained = time.monotonic() - storage.sigterm_at
        code, elapsed = await storage.exit(GRACE_S + FLUSH_S + 5)
        exited_at = time.monotonic()
    print(
        f"storage-adapter: drained call done {drained:.2f}s after SIGTERM,"
        f" exit after {elapsed:.2f}s, flush {storage.flush_s():.3f}s"
    )
    assert code == 0, storage.log()
    assert elapsed < GRACE_S, storage.log()
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT content FROM messages WHERE idempotency_key = 'drain-k1'")
        assert [row[0] for row in rows] == ["kept"]
    exported_by(receiver, "storage-adapter", exited_at)
    names = {span.name for span in spans_with(receiver, "storage-adapter", "drain-write")}
    assert "POST /v1/conversations/{continuation_id}/messages" in names, names
    points = final_points(
        receiver, "storage-adapter", "http.server.request.duration", storage.sigterm_at
    )
    assert any(
        p.get("http.route") == "/v1/conversations/{continuation_id}/messages"
        and p.get("http.response.status_code") == 201
        for p in points
    ), points


@contextlib.asynccontextmanager
async def gateway_client(port: int) -> AsyncIterator[NativeClient]:
    async with connect(f"ws://127.0.0.1:{port}", open_timeout=5) as ws:
        client = NativeClient(ws)
        assert (await client.hello())["ok"] is True
        yield client


async def test_ws_gateway_drains_a_call_and_its_memory_write_then_flushes(
    simulator: Simulator, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    await simulator.admin("POST", "/admin/latency", {"ms": LATENCY_MS, "tokens_per_s": 0})
    with (
        service(
            "provider_proxy",
            "EXAI_PROVIDER_PROXY_PORT",
            tmp_path,
            EXAI_SIMULATOR_URL=simulator.url,
            OTEL_SDK_DISABLED="true",
        ) as proxy,
        service(
            "storage_adapter",
            "EXAI_STORAGE_ADAPTER_PORT",
            tmp_path,
            EXAI_SQLITE_PATH=str(tmp_path / "gateway.db"),
            OTEL_SDK_DISABLED="true",
        ) as storage,
        service(
            "ws_gateway",
            "EXAI_WS_PORT",
            tmp_path,
            EXAI_WS_TOKEN=TOKEN,
            EXAI_PROVIDER_URL=proxy.url,
            EXAI_STORAGE_URL=storage.url,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        ) as gateway,
    ):
        async with gateway_client(gateway.port) as client:
            arguments = {"prompt": PROMPT, "model": MODEL, "continuation_id": "drain-chat"}
            await client.call("chat", arguments, "in-flight", correlation_id="drain-call")
            await simulator.wait_requests(1)
            gateway.terminate()
            await wait_refused(gateway)
            # A call that arrives while draining is refused; the running one finishes.
            refused = final(await client.run("status", request_id="late"))
            assert refused["error"]["code"] == "OVER_CAPACITY", refused
            result = final(await client.until_end("in-flight"))
            assert result["op"] == "call_tool_res", result
            assert result["correlation_id"] == "drain-call"
            drained = time.monotonic() - gateway.sigterm_at
        code, elapsed = await gateway.exit(GRACE_S + FLUSH_S + 10)
        exited_at = time.monotonic()
        # The answered exchange was stored before the gateway exited.
        async with httpx.AsyncClient(
            base_url=storage.url, headers=bearer(STORAGE_TOKEN), timeout=10
        ) as storage_client:
            history = await storage_client.get("/v1/conversations/drain-chat")
    print(
        f"ws-gateway: drained call done {drained:.2f}s after SIGTERM,"
        f" exit after {elapsed:.2f}s, flush {gateway.flush_s():.3f}s"
    )
    assert code == 0, gateway.log()
    assert elapsed < GRACE_S, gateway.log()
    assert history.status_code == 200, history.text
    assert [m["role"] for m in history.json()["messages"]] == ["user", "assistant"]
    exported_by(receiver, "ws-gateway", exited_at)
    names = {span.name for span in spans_with(receiver, "ws-gateway", "drain-call")}
    assert "ws call_tool chat" in names, names
    points = final_points(receiver, "ws-gateway", "exai.gateway.calls", gateway.sigterm_at)
    # Counted, not only the series created at 0 at start-up.
    assert any(
        p.get("exai.tool") == "chat" and p.get("exai.outcome") == "ok" and p["value"] >= 1
        for p in points
    ), points


@pytest.mark.parametrize(
    ("module", "port_variable", "extra"),
    [
        ("ws_gateway", "EXAI_WS_PORT", {"EXAI_WS_TOKEN": TOKEN}),
        ("provider_proxy", "EXAI_PROVIDER_PROXY_PORT", {}),
        ("storage_adapter", "EXAI_STORAGE_ADAPTER_PORT", {}),
        ("llm_simulator", "EXAI_LLM_SIMULATOR_PORT", {}),
    ],
)
async def test_a_collector_that_never_answers_costs_at_most_the_flush_bound(
    module: str, port_variable: str, extra: dict[str, str], tmp_path: Path
) -> None:
    flush_s = 1.0
    with (
        BlackHole() as collector,
        service(
            module,
            port_variable,
            tmp_path,
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
            EXAI_TELEMETRY_FLUSH_S=str(flush_s),
            EXAI_OTLP_TIMEOUT_S="30",  # each export alone would wait this long
            **extra,
        ) as process,
    ):
        # Some telemetry to flush: start-up logs, a health evaluation.
        async with httpx.AsyncClient(timeout=10) as client:
            await client.get(f"{process.url}/health")
        process.terminate()
        code, elapsed = await process.exit(GRACE_S + 60)
    print(f"{module} with a hung collector: SIGTERM to exit {elapsed:.2f}s")
    assert code == 0, process.log()
    # Nothing to drain: the flush bound plus process teardown.
    assert elapsed < flush_s + 3 * TIME_SCALE, process.log()
    assert "telemetry flush" in process.log()
