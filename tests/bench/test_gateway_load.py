"""Gateway throughput, exact bookkeeping and memory under load.

The whole chain runs for real in this process: M native-protocol sessions → ws-gateway
→ provider-proxy → llm-simulator (plus storage-adapter, idle here), every service
recording spans into the in-memory exporter. Measured:

- throughput and latency of `chat` calls through the gateway, in phases interleaved
  with phases of the same number of concurrent workers calling the provider-proxy
  directly; the ratio of the two rates is what the gateway layer (WebSocket, protocol,
  in-flight slots, call span, its HTTP client) costs;
- after a long run and a burst of cancels and abrupt disconnects, the gateway's
  in-flight counters (limiter and `exai.gateway.inflight`) are exactly 0 again;
- RSS after warm-up vs after the run: no per-call leak.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.bench.measure import SCALE, ms, p50, p95, report, settled_rss
from tests.integration.ws_gateway.stack import (
    NativeClient,
    Stack,
    eventually,
    final,
    native,
    running_stack,
)
from tests.support.internal_auth import PROVIDER_TOKEN, bearer
from tests.support.telemetry import CapturedTelemetry, metric_points

pytestmark = pytest.mark.bench

MODEL = "kimi-k2-0905-preview"
HANGING_MODEL = "glm-4.5"  # the burst hangs the GLM provider only
SESSIONS = 8
WARMUP_PER_SESSION = 40
ROUNDS = 6
GATEWAY_PER_SESSION = 63  # 6 rounds x 8 sessions x 63 = 3024 measured gateway calls
PROXY_PER_WORKER = 32
# Targets (see docs/benchmarks.md).
MIN_RATE_RATIO = 0.35  # gateway calls/s over proxy-direct calls/s (measured ~0.8)
MAX_RSS_GROWTH_BYTES = 8 * 1024 * 1024  # over ~3000 calls (measured ~1.4-1.7 MiB)
MAX_RSS_BYTES_PER_CALL = MAX_RSS_GROWTH_BYTES / (ROUNDS * SESSIONS * GATEWAY_PER_SESSION)


def chat_args(index: int) -> dict[str, Any]:
    return {"prompt": f"Benchmark question number {index}?", "model": MODEL}


def metric_sum(stack: Stack, name: str, **attributes: str) -> int:
    return sum(
        int(point.value)
        for attrs, point in metric_points(stack.reader, name)
        if all(attrs.get(k) == v for k, v in attributes.items())
    )


async def phase(
    workers: int, per_worker: int, call: Callable[[int, int], Awaitable[None]]
) -> tuple[float, list[float]]:
    """`workers` concurrent loops of `per_worker` sequential calls: (calls/s, latencies)."""
    latencies: list[float] = []

    async def worker(worker_index: int) -> None:
        for index in range(per_worker):
            start = time.perf_counter()
            await call(worker_index, index)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for worker_index in range(workers):
            group.create_task(worker(worker_index))
    return workers * per_worker / (time.perf_counter() - start), latencies


async def abandon(client: NativeClient, calls: int) -> None:
    """Fill the session's in-flight slots with calls that hang upstream."""
    for index in range(calls):
        await client.call("chat", {"prompt": f"hang {index}", "model": HANGING_MODEL}, f"h{index}")


async def test_gateway_throughput_bookkeeping_and_memory(
    captured: CapturedTelemetry, tmp_path: Path
) -> None:
    async with contextlib.AsyncExitStack() as exit_stack:
        stack = await exit_stack.enter_async_context(running_stack(captured, tmp_path))
        gateway = stack.gateway
        clients = [
            await exit_stack.enter_async_context(native(gateway, session_id=f"bench-{i}"))
            for i in range(SESSIONS)
        ]
        proxy = await exit_stack.enter_async_context(
            httpx.AsyncClient(
                base_url=f"{stack.proxy_url}/v1", headers=bearer(PROVIDER_TOKEN), timeout=30
            )
        )
        serial = iter(range(10**9))

        async def via_gateway(worker: int, _index: int) -> None:
            request_id = f"c{next(serial)}"
            frames = await clients[worker].run("chat", chat_args(next(serial)), request_id)
            assert final(frames)["op"] == "call_tool_res", final(frames)

        async def via_proxy(_worker: int, _index: int) -> None:
            body = {
                "model": MODEL,
                "messages": [{"role": "user", "content": f"Benchmark question {next(serial)}?"}],
            }
            response = await proxy.post("/chat/completions", json=body)
            assert response.status_code == 200, response.text

        # Warm-up: connection pools, code paths, metric attribute sets, allocator arenas.
        await phase(SESSIONS, WARMUP_PER_SESSION, via_gateway)
        await phase(SESSIONS, WARMUP_PER_SESSION, via_proxy)
        captured.exporter.clear()
        rss_before = settled_rss()
        ok_before = metric_sum(stack, "exai.gateway.calls", **{"exai.outcome": "ok"})

        gateway_rates: list[float] = []
        proxy_rates: list[float] = []
        gateway_latencies: list[float] = []
        proxy_latencies: list[float] = []
        spans_per_call: list[float] = []
        for round_index in range(ROUNDS):
            order = ["gateway", "proxy"] if round_index % 2 == 0 else ["proxy", "gateway"]
            for name in order:
                if name == "gateway":
                    rate, latencies = await phase(SESSIONS, GATEWAY_PER_SESSION, via_gateway)
                    gateway_rates.append(rate)
                    gateway_latencies.extend(latencies)
                    spans_per_call.append(
                        len(captured.exporter.get_finished_spans()) / len(latencies)
                    )
                else:
                    rate, latencies = await phase(SESSIONS, PROXY_PER_WORKER, via_proxy)
                    proxy_rates.append(rate)
                    proxy_latencies.extend(latencies)
                # Bounded memory: the spans were recorded and exported, now drop them.
                captured.exporter.clear()
        measured_calls = len(gateway_latencies)
        ok_calls = metric_sum(stack, "exai.gateway.calls", **{"exai.outcome": "ok"}) - ok_before
        rss_after = settled_rss()

        # Bookkeeping under load: every slot of 8 more sessions taken by a call that
        # hangs upstream, half of them cancelled, then every one of those connections
        # dropped without a close frame while the rest are still in flight.
        await stack.simulator(
            "POST", "/admin/faults", {"mode": "hang", "rate": 1.0, "provider": "glm"}
        )
        per_session = gateway.limiter.per_session
        async with contextlib.AsyncExitStack() as burst:
            doomed = [
                await burst.enter_async_context(native(gateway, session_id=f"gone-{i}"))
                for i in range(SESSIONS)
            ]
            async with asyncio.TaskGroup() as group:
                for client in doomed:
                    group.create_task(abandon(client, per_session))

            async def all_hanging() -> bool:
                return int((await stack.stats())["hanging"]) == SESSIONS * per_session

            await eventually(all_hanging, timeout_s=10)
            peak = gateway.limiter.global_inflight
            for client in doomed:
                for index in range(0, per_session, 2):
                    await client.send({"op": "cancel", "request_id": f"h{index}"})
            for client in doomed:
                client.ws.transport.abort()  # no close handshake: the client vanished

        async def idle() -> bool:
            stats = await stack.stats()
            return (
                gateway.limiter.global_inflight == 0
                and gateway.connections.open == SESSIONS
                and int(stats["hanging"]) == 0  # the upstream requests were aborted too
            )

        await eventually(idle, timeout_s=10)
        await stack.simulator("POST", "/admin/faults", {"mode": "none"})

        inflight_metric = metric_sum(stack, "exai.gateway.inflight")
        sessions_with_calls = gateway.limiter.sessions_with_calls
        captured.exporter.clear()

    gateway_rate, proxy_rate = p50(gateway_rates), p50(proxy_rates)
    rate_ratio = gateway_rate / proxy_rate
    growth = rss_after - rss_before
    report(
        "gateway-throughput",
        sessions=SESSIONS,
        calls=measured_calls,
        gateway_rate=f"{gateway_rate:.0f}/s",
        proxy_direct_rate=f"{proxy_rate:.0f}/s",
        rate_ratio=f"{rate_ratio:.2f} (target >= {MIN_RATE_RATIO / SCALE:.2f})",
        gateway_p50=ms(p50(gateway_latencies)),
        gateway_p95=ms(p95(gateway_latencies)),
        proxy_p50=ms(p50(proxy_latencies)),
        proxy_p95=ms(p95(proxy_latencies)),
        spans_per_call=f"{p50(spans_per_call):.1f}",
    )
    report(
        "gateway-bookkeeping",
        burst_peak_inflight=peak,
        burst_abandoned_sessions=SESSIONS,
        inflight_after=gateway.limiter.global_inflight,
        sessions_with_calls=sessions_with_calls,
        inflight_metric=inflight_metric,
        ok_calls=f"{ok_calls}/{measured_calls}",
    )
    report(
        "gateway-memory",
        rss_after_warmup=f"{rss_before / 2**20:.1f}MiB",
        rss_after_run=f"{rss_after / 2**20:.1f}MiB",
        growth=f"{growth / 2**20:.2f}MiB",
        per_call=f"{growth / measured_calls:.0f}B",
        target=f"<= {MAX_RSS_GROWTH_BYTES / 2**20:.0f}MiB ({MAX_RSS_BYTES_PER_CALL:.0f}B/call)",
    )
    assert ok_calls == measured_calls
    assert peak == SESSIONS * per_session  # every slot was taken when they vanished
    assert gateway.limiter.global_inflight == 0
    assert sessions_with_calls == 0
    assert inflight_metric == 0
    assert rate_ratio >= MIN_RATE_RATIO / SCALE
    assert growth <= MAX_RSS_GROWTH_BYTES
