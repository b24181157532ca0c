"""The load generator of `make bench-chain`, in a process of its own (off the services).

`python -m tests.bench.chain.load SPEC.json OUT.json`: SPEC says what to do, OUT gets
what happened. Native-protocol callers (tests.integration.ws_gateway.stack.NativeClient)
send `chat` calls with a `continuation_id`, one at a time each, so every call reads its
conversation's history and stores its exchange. A caller moves to a new conversation
every `calls_per_conversation` calls, so the history (and the work per call) stays the
same size however long the run is. Every `stream_every`-th call streams; with
`memory_every` > 1, only one call in that many has a `continuation_id`.

With `connections` > `callers`, that many sockets are opened and authenticated first
(`open_concurrency` at a time); the first `callers` of them make calls, the others stay
idle and must still be open at the end. Then every socket is closed and a fresh one asks
the `status` tool for the gateway's in-flight counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.protocol import State

from tests.bench.processes import rss_bytes
from tests.integration.ws_gateway.stack import NativeClient

MODEL = "kimi-k2-0905-preview"
FINAL_OPS = ("call_tool_res", "error", "cancelled")
CALL_TIMEOUT_S = 60.0


@dataclass
class Spec:
    url: str
    token: str
    callers: int
    seconds: float
    prefix: str  # of session and conversation IDs: distinct per run
    connections: int = 0  # 0: as many as callers
    open_concurrency: int = 50
    stream_every: int = 0  # 0: no streaming calls
    calls_per_conversation: int = 4
    memory_every: int = 1  # 1 call in this many has a continuation_id (memory)
    status_after: bool = False
    rss_pids: dict[str, int] = field(default_factory=dict)  # read while all are open


@dataclass
class Outcome:
    calls: int = 0  # sent, whenever they ended
    ok: int = 0
    in_window: int = 0  # answered (ok) within the measured window
    window_s: float = 0.0
    streamed_ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    memory_read: Counter[str] = field(default_factory=Counter)
    memory_write: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    correlation_ids: list[str] = field(default_factory=list)
    opened: int = 0
    open_failed: Counter[str] = field(default_factory=Counter)
    open_s: float = 0.0
    idle_still_open: int = 0
    idle_total: int = 0
    rss: dict[str, int] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    cpu_s: float = 0.0  # the whole process, imports included
    wall_s: float = 0.0
    window_cpu_s: float = 0.0  # while the callers called


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard one (thousands of sockets); children inherit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def open_client(spec: Spec, index: int) -> NativeClient:
    # No client pings: the gateway pings idle sockets, the generator stays cheap.
    ws = await connect(spec.url, open_timeout=30, ping_interval=None, max_size=2**22)
    client = NativeClient(ws)
    ack = await client.hello(spec.token, session_id=f"{spec.prefix}-s{index}")
    if ack.get("ok") is not True:
        await ws.close()
        raise RuntimeError(f"hello refused: {ack}")
    return client


async def one_call(
    client: NativeClient, spec: Spec, caller: int, number: int, out: Outcome, window_end: float
) -> None:
    stream = spec.stream_every > 0 and number % spec.stream_every == spec.stream_every - 1
    turn = number // spec.memory_every
    conversation = f"{spec.prefix}-c{caller}-{turn // spec.calls_per_conversation}"
    arguments = {
        "prompt": f"Question {number} from caller {caller}: name three colours, briefly.",
        "model": MODEL,
    }
    remember = number % spec.memory_every == 0
    if remember:
        arguments["continuation_id"] = conversation
    request_id = f"r{number}"
    frame: dict[str, Any] = {
        "op": "call_tool",
        "request_id": request_id,
        "name": "chat",
        "arguments": arguments,
    }
    if stream:
        frame["stream"] = True
    out.calls += 1
    start = time.monotonic()
    try:
        await client.send(frame)
        frames = await asyncio.wait_for(client.until_end(request_id), CALL_TIMEOUT_S)
    except Exception as exc:  # a transport failure is one error of the run, not its end
        out.errors[type(exc).__name__] += 1
        raise
    end = frames[-1]
    if end["op"] != "call_tool_res":
        out.errors[str(end.get("error", {}).get("code", end["op"]))] += 1
        return
    ops = [f["op"] for f in frames]
    if stream and ("stream_complete" not in ops or "stream_chunk" not in ops):
        out.errors["stream without chunks"] += 1
        return
    now = time.monotonic()
    out.ok += 1
    out.streamed_ok += stream
    out.latencies.append(now - start)
    if now <= window_end:
        out.in_window += 1
    out.correlation_ids.append(end["correlation_id"])
    if remember:
        memory = end.get("metadata", {}).get("memory", {})
        out.memory_read[str(memory.get("read"))] += 1
        out.memory_write[str(memory.get("write"))] += 1


async def caller_loop(
    client: NativeClient, spec: Spec, caller: int, out: Outcome, window_end: float
) -> None:
    number = 0
    while time.monotonic() < window_end:
        try:
            await one_call(client, spec, caller, number, out, window_end)
        except Exception:
            return  # this socket is broken: counted, the others carry on
        number += 1


async def open_all(spec: Spec, count: int, out: Outcome) -> list[NativeClient]:
    gate = asyncio.Semaphore(spec.open_concurrency)
    clients: list[NativeClient | None] = [None] * count

    async def opener(index: int) -> None:
        async with gate:
            try:
                clients[index] = await open_client(spec, index)
            except Exception as exc:
                out.open_failed[type(exc).__name__] += 1

    start = time.monotonic()
    async with asyncio.TaskGroup() as group:
        for index in range(count):
            group.create_task(opener(index))
    out.open_s = time.monotonic() - start
    opened = [c for c in clients if c is not None]
    out.opened = len(opened)
    return opened


async def status_of(spec: Spec) -> dict[str, Any]:
    client = await open_client(spec, 10**6)
    try:
        frames = await client.run("status", {}, "status")
        result: dict[str, Any] = frames[-1].get("metadata", {})
        return result
    finally:
        await client.ws.close()


async def drive(spec: Spec) -> Outcome:
    out = Outcome()
    count = max(spec.connections, spec.callers)
    clients = await open_all(spec, count, out)
    active, idle = clients[: spec.callers], clients[spec.callers :]
    cpu_before = own_cpu_s()
    window_end = time.monotonic() + spec.seconds
    async with asyncio.TaskGroup() as group:
        for caller, client in enumerate(active):
            group.create_task(caller_loop(client, spec, caller, out, window_end))
    out.window_cpu_s = own_cpu_s() - cpu_before
    out.window_s = spec.seconds
    out.idle_total = len(idle)
    out.idle_still_open = sum(c.ws.state is State.OPEN for c in idle)
    for name, pid in spec.rss_pids.items():
        with contextlib.suppress(OSError, RuntimeError):
            out.rss[name] = rss_bytes(pid)
    await asyncio.gather(*(c.ws.close() for c in clients), return_exceptions=True)
    if spec.status_after:
        # The server ends its side of each close asynchronously: ask until only the
        # status socket is open (or give up after a few seconds and report what it says).
        deadline = time.monotonic() + 10
        while True:
            out.status = await status_of(spec)
            if out.status["connections"]["open"] == 1 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    return out


def summary(out: Outcome) -> dict[str, Any]:
    # Not asdict(): it rebuilds a Counter from (key, value) pairs, counting the pairs.
    data = {f.name: getattr(out, f.name) for f in fields(out)}
    data.update({k: dict(v) for k, v in data.items() if isinstance(v, Counter)})
    latencies = sorted(data.pop("latencies"))
    data["rate"] = out.in_window / out.window_s if out.window_s else 0.0
    data["p50_s"] = statistics.median(latencies) if latencies else 0.0
    data["p99_s"] = (
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
    )
    data["error_total"] = sum(out.errors.values())
    return data


def main(argv: list[str]) -> int:
    spec_path, out_path = Path(argv[0]), Path(argv[1])
    spec = Spec(**json.loads(spec_path.read_text()))
    raise_fd_limit()
    wall = time.monotonic()
    out = asyncio.run(drive(spec))
    out.cpu_s = own_cpu_s()
    out.wall_s = time.monotonic() - wall
    out_path.write_text(json.dumps(summary(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
