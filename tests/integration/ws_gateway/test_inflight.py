"""Cancel, timeouts, capacity limits, disconnects and shutdown: the upstream really stops
and the in-flight counters come back to exactly zero."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.integration.ws_gateway.stack import (
    TIME_SCALE,
    TOKEN,
    NativeClient,
    Stack,
    eventually,
    final,
    native,
)
from tests.support.telemetry import metric_points
from ws_gateway.server import Gateway

pytestmark = pytest.mark.integration

HANGING_MODEL = "glm-4.5"  # the hang fault is set for the GLM provider only
QUICK_MODEL = "kimi-k2-0905-preview"


async def hang_glm(stack: Stack) -> None:
    await stack.simulator("POST", "/admin/faults", {"mode": "hang", "rate": 1.0, "provider": "glm"})


def hanging_chat(prompt: str = "wait for me") -> dict[str, Any]:
    return {"prompt": prompt, "model": HANGING_MODEL}


async def hanging_count(stack: Stack) -> int:
    return int((await stack.stats())["hanging"])


async def wait_hanging(stack: Stack, count: int) -> None:
    async def check() -> bool:
        return await hanging_count(stack) == count

    await eventually(check)


def assert_idle(gateway: Gateway) -> None:
    assert gateway.limiter.global_inflight == 0
    assert gateway.limiter.sessions_with_calls == 0


def metric_sum(reader: Any, name: str) -> int:
    return sum(int(point.value) for _, point in metric_points(reader, name))


def outcome_counts(reader: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for attributes, point in metric_points(reader, "exai.gateway.calls"):
        if not point.value:
            continue  # a series created at 0 at start-up
        outcome = attributes["exai.outcome"]
        counts[outcome] = counts.get(outcome, 0) + int(point.value)
    return counts


async def test_cancel_aborts_the_upstream_request(stack: Stack) -> None:
    await hang_glm(stack)
    async with native(stack.gateway) as client:
        await client.call("chat", hanging_chat(), "slow")
        await wait_hanging(stack, 1)
        assert stack.gateway.limiter.global_inflight == 1
        await client.send({"op": "cancel", "request_id": "slow"})
        frames = await client.until_end("slow")
        assert final(frames) == {"op": "cancelled", "request_id": "slow"}
        assert_idle(stack.gateway)
        # The simulator saw its client (the proxy) leave: the abort went all the way up.
        await wait_hanging(stack, 0)
        assert (await stack.stats())["disconnects"] >= 1

        async def proxy_request_ended() -> bool:
            return any(
                s.name == "POST /v1/chat/completions"
                for s in stack.captured.spans_of("provider-proxy")
            )

        await eventually(proxy_request_ended, timeout_s=2)
        # The connection is still good for more work.
        assert (
            final(await client.run("chat", {"prompt": "quick", "model": QUICK_MODEL}, "next"))["op"]
            == "call_tool_res"
        )
    assert outcome_counts(stack.reader) == {"cancelled": 1, "ok": 1}


async def test_cancel_mid_stream(stack: Stack) -> None:
    await stack.simulator("POST", "/admin/latency", {"tokens_per_s": 5})
    async with native(stack.gateway) as client:
        await client.call("chat", {"prompt": "a long story please"}, "s", stream=True)
        frame = await client.recv()
        while frame["op"] != "stream_chunk":
            frame = await client.recv()
        await client.send({"op": "cancel", "request_id": "s"})
        frames = await client.until_end("s")
        assert final(frames)["op"] == "cancelled"
        assert "call_tool_res" not in [f["op"] for f in frames]

    async def stream_closed() -> bool:
        stats = await stack.stats()
        return bool(stats["streaming"] == 0 and stats["disconnects"] >= 1)

    await eventually(stream_closed)
    assert_idle(stack.gateway)


async def test_call_timeout_is_a_timeout_error_and_aborts_upstream(stack: Stack) -> None:
    gateway, reader = await stack.start_gateway(EXAI_CALL_TIMEOUT_S=0.5 * TIME_SCALE)
    await hang_glm(stack)
    async with native(gateway) as client:
        result = final(await client.run("chat", hanging_chat(), "t"))
    assert result["op"] == "error" and result["error"]["code"] == "TIMEOUT"
    assert result["request_id"] == "t"
    assert_idle(gateway)
    await wait_hanging(stack, 0)
    assert outcome_counts(reader) == {"timeout": 1}


async def test_over_capacity_per_session_and_global(stack: Stack) -> None:
    gateway, reader = await stack.start_gateway(
        EXAI_MAX_INFLIGHT_PER_SESSION=2, EXAI_MAX_INFLIGHT_GLOBAL=3
    )
    await hang_glm(stack)
    async with native(gateway) as a, native(gateway) as b:
        await a.call("chat", hanging_chat(), "a1")
        await a.call("chat", hanging_chat(), "a2")
        await wait_hanging(stack, 2)
        rejected = final(await a.run("status", request_id="a3"))
        assert rejected["op"] == "error" and rejected["error"]["code"] == "OVER_CAPACITY"
        assert "session" in rejected["error"]["message"]

        await b.call("chat", hanging_chat(), "b1")
        await wait_hanging(stack, 3)
        rejected = final(await b.run("status", request_id="b2"))
        assert rejected["error"]["code"] == "OVER_CAPACITY"
        assert "gateway" in rejected["error"]["message"]
        # Rejection is an error frame, not a close: the connection works on.
        await b.send({"op": "ping"})
        assert await b.recv() == {"op": "pong"}
        assert gateway.limiter.global_inflight == 3

        for client, request_id in ((a, "a1"), (a, "a2"), (b, "b1")):
            await client.send({"op": "cancel", "request_id": request_id})
            assert final(await client.until_end(request_id))["op"] == "cancelled"
        assert_idle(gateway)
        # Capacity is back.
        await stack.simulator("POST", "/admin/faults", {"mode": "none"})
        assert final(await a.run("status", request_id="a4"))["op"] == "call_tool_res"
    # The session's own cap is the client's pace (client_error, outside the SLO); the
    # gateway's global cap is a capacity failure (rejected, SLO bad).
    assert outcome_counts(reader) == {"client_error": 1, "rejected": 1, "cancelled": 3, "ok": 1}


async def test_counters_stay_exact_under_cancels_disconnects_errors_and_timeouts(
    stack: Stack,
) -> None:
    gateway, reader = await stack.start_gateway(
        EXAI_MAX_INFLIGHT_PER_SESSION=4,
        EXAI_MAX_INFLIGHT_GLOBAL=24,
        # Long enough that a quick call on a loaded 2-core CI machine still ends `ok`
        # (it takes ~50 ms alone); the hanging calls still end in `timeout`.
        EXAI_CALL_TIMEOUT_S=3.0 * TIME_SCALE,
    )
    await hang_glm(stack)
    rng = random.Random(11)
    endings: dict[str, int] = {}

    async def client_session(index: int) -> None:
        ws = await connect(gateway.url)
        client = NativeClient(ws)
        assert (await client.hello(session_id=f"chaos-{index}"))["ok"]
        calls = []
        for n, kind in enumerate(["hang", "invalid", "quick", "status", "hang"]):
            arguments: dict[str, Any] = {
                "hang": hanging_chat(),
                "quick": {"prompt": f"q{n}", "model": QUICK_MODEL},
                "invalid": {"prompt": ""},
                "status": {},
            }[kind]
            await client.call("status" if kind == "status" else "chat", arguments, f"{index}-{n}")
            calls.append(f"{index}-{n}")
        behaviour = index % 4
        try:
            if behaviour == 0:  # cancel everything still running
                for request_id in calls:
                    await client.send({"op": "cancel", "request_id": request_id})
                await asyncio.sleep(0.05)
            elif behaviour == 1:  # vanish without a close frame
                await asyncio.sleep(rng.random() * 0.2)
                ws.transport.abort()
                return
            elif behaviour == 2:  # close politely while calls run
                await asyncio.sleep(rng.random() * 0.2)
            else:  # wait for every ending: results, errors, timeouts
                for request_id in calls:
                    op = final(await client.until_end(request_id))
                    key = op["error"]["code"] if op["op"] == "error" else op["op"]
                    endings[key] = endings.get(key, 0) + 1
        finally:
            await ws.close()

    await asyncio.gather(*(client_session(i) for i in range(12)))

    async def idle() -> bool:
        return gateway.limiter.global_inflight == 0 and gateway.connections.open == 0

    await eventually(idle)
    assert_idle(gateway)
    assert metric_sum(reader, "exai.gateway.inflight") == 0
    assert metric_sum(reader, "exai.gateway.connections") == 0
    calls = outcome_counts(reader)
    # Every call the gateway received ended exactly once. (A client that vanishes with
    # a TCP reset may take its last frames with it, so fewer than 60 may arrive.)
    assert 45 <= sum(calls.values()) <= 60
    # ("invalid" calls are the client's mistake: client_error, not error.)
    assert {"cancelled", "client_error", "timeout", "ok"} <= set(calls)
    assert "error" not in calls
    await wait_hanging(stack, 0)  # and nothing is left hanging upstream
    assert endings  # the waiting clients saw their calls end


async def test_graceful_shutdown_lets_calls_finish_then_closes_1001(stack: Stack) -> None:
    gateway, _ = await stack.start_gateway(EXAI_SHUTDOWN_GRACE_S=5 * TIME_SCALE)
    await stack.simulator("POST", "/admin/latency", {"ms": 400})
    port = gateway.port
    async with native(gateway) as client:
        await client.call("chat", {"prompt": "finish me", "model": QUICK_MODEL}, "in-flight")
        await asyncio.sleep(0.1)
        stopping = asyncio.create_task(gateway.stop())
        await asyncio.sleep(0.05)
        # A call that arrives while draining is refused, the running one finishes.
        refused = final(await client.run("status", request_id="late"))
        assert refused["error"]["code"] == "OVER_CAPACITY"
        result = final(await client.until_end("in-flight"))
        assert result["op"] == "call_tool_res"
        with pytest.raises(ConnectionClosed):
            await client.recv()
        assert client.ws.close_code == 1001
        await asyncio.wait_for(stopping, 5 * TIME_SCALE)
    with pytest.raises((OSError, InvalidHandshake)):
        async with connect(f"ws://127.0.0.1:{port}", open_timeout=2):
            pass


async def test_shutdown_after_the_grace_period_cancels_what_is_left(stack: Stack) -> None:
    gateway, _ = await stack.start_gateway(EXAI_SHUTDOWN_GRACE_S=0.3 * TIME_SCALE)
    await hang_glm(stack)
    async with native(gateway) as client:
        await client.call("chat", hanging_chat(), "stuck")
        await wait_hanging(stack, 1)
        await asyncio.wait_for(gateway.stop(), 5 * TIME_SCALE)
        with pytest.raises(ConnectionClosed):
            while True:
                await client.recv()
        assert client.ws.close_code == 1001
    assert_idle(gateway)
    await wait_hanging(stack, 0)


async def test_per_connection_calls_run_concurrently(stack: Stack) -> None:
    await hang_glm(stack)
    async with native(stack.gateway) as client:
        await client.call("chat", hanging_chat(), "slow")
        # A slow call blocks neither ping nor another call on the same connection.
        await client.send({"op": "ping"})
        frame = await client.recv()
        while frame["op"] == "progress":
            frame = await client.recv()
        assert frame == {"op": "pong"}
        quick = final(await client.run("chat", {"prompt": "fast", "model": QUICK_MODEL}, "fast"))
        assert quick["op"] == "call_tool_res"
        # Duplicate of the running id: rejected, the running one is untouched. The
        # rejection is not addressed to "slow" (that would read as the end of the
        # running call): the duplicate id is inside the error.
        await client.call("chat", hanging_chat(), "slow")
        dup = await client.recv()
        while dup.get("op") == "progress":
            dup = await client.recv()
        assert dup == {
            "op": "error",
            "request_id": None,
            "error": {
                "code": "INVALID_REQUEST",
                "message": "request_id 'slow' is already in flight",
                "request_id": "slow",
            },
        }
        assert stack.gateway.limiter.global_inflight == 1
        await client.send({"op": "cancel", "request_id": "slow"})
        assert final(await client.until_end("slow"))["op"] == "cancelled"


async def test_hello_then_disconnect_without_calls_is_clean(stack: Stack) -> None:
    async with connect(stack.gateway.url) as ws:
        await ws.send(json.dumps({"op": "hello", "token": TOKEN}))
        await ws.recv()

    async def closed() -> bool:
        return stack.gateway.connections.open == 0

    await eventually(closed)
    assert metric_sum(stack.reader, "exai.gateway.connections") == 0


# --- a cancel that overtakes its call ----------------------------------------------------


def call_frame(name: str, arguments: dict[str, Any], request_id: Any) -> dict[str, Any]:
    return {"op": "call_tool", "request_id": request_id, "name": name, "arguments": arguments}


def cancel_frame(request_id: Any) -> dict[str, Any]:
    return {"op": "cancel", "request_id": request_id}


def assert_no_call_left(gateway: Gateway, reader: Any) -> None:
    assert_idle(gateway)
    assert metric_sum(reader, "exai.gateway.inflight") == 0


async def test_a_cancel_in_the_same_write_as_its_call_ends_it(stack: Stack) -> None:
    gateway, reader = await stack.start_gateway()
    async with native(gateway) as client:
        # The gateway reads the cancel before the call's task took its first step.
        await client.send_together(call_frame("status", {}, "r"), cancel_frame("r"))
        assert final(await client.until_end("r")) == {"op": "cancelled", "request_id": "r"}
        assert_no_call_left(gateway, reader)
        # The id is free again: not "already in flight" for the rest of the session.
        assert final(await client.run("status", request_id="r"))["op"] == "call_tool_res"
        # Several at once: each call ends exactly once, in any mix.
        await client.send_together(
            call_frame("status", {}, 1),
            call_frame("chat", {"prompt": "x", "model": QUICK_MODEL}, 2),
            cancel_frame(1),
            call_frame("status", {}, 3),
            cancel_frame(2),
        )
        endings = {rid: final(await client.until_end(rid))["op"] for rid in (1, 2, 3)}
        assert endings == {1: "cancelled", 2: "cancelled", 3: "call_tool_res"}
        await client.send({"op": "ping"})
        assert await client.recv() == {"op": "pong"}  # nothing else was sent for them
    assert_no_call_left(gateway, reader)
    assert outcome_counts(reader) == {"cancelled": 3, "ok": 2}
    cancelled_spans = [
        s
        for s in stack.captured.spans_of("ws-gateway")
        if s.attributes and s.attributes.get("exai.outcome") == "cancelled"
    ]
    assert len(cancelled_spans) == 3


async def test_cancel_of_a_call_that_has_no_slot_yet(stack: Stack) -> None:
    gateway, reader = await stack.start_gateway(EXAI_MAX_INFLIGHT_PER_SESSION=1)
    await hang_glm(stack)
    async with native(gateway) as client:
        await client.call("chat", hanging_chat(), "holder")
        await wait_hanging(stack, 1)
        assert gateway.limiter.global_inflight == 1
        # The session's only slot is taken; this call is cancelled before it gets one.
        await client.send_together(call_frame("status", {}, "waiting"), cancel_frame("waiting"))
        assert final(await client.until_end("waiting")) == {
            "op": "cancelled",
            "request_id": "waiting",
        }
        assert gateway.limiter.global_inflight == 1  # the holder's, nothing more
        await client.send(cancel_frame("holder"))
        assert final(await client.until_end("holder"))["op"] == "cancelled"
        assert_no_call_left(gateway, reader)
        await stack.simulator("POST", "/admin/faults", {"mode": "none"})
        assert final(await client.run("status", request_id="waiting"))["op"] == "call_tool_res"
    assert_no_call_left(gateway, reader)
    assert outcome_counts(reader) == {"cancelled": 2, "ok": 1}
    await wait_hanging(stack, 0)


async def test_a_disconnect_right_after_a_call_still_ends_it(stack: Stack) -> None:
    gateway, reader = await stack.start_gateway()
    async with native(gateway) as client:
        await client.send_together(call_frame("status", {}, "gone"))
        client.ws.transport.abort()

    async def closed() -> bool:
        return gateway.connections.open == 0

    await eventually(closed)
    assert_no_call_left(gateway, reader)
    assert sum(outcome_counts(reader).values()) == 1
