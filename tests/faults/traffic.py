"""Chat traffic through the gateway's native protocol, with a ledger of every call.

A :class:`Traffic` runs a few workers, each on its own WebSocket connection and
session. A worker sends ``chat`` calls with a ``continuation_id`` (so the exchange is
stored), mostly streaming, each with a prompt no other call uses, and records how each
call ended: ``call_tool_res`` (acknowledged, with the gateway's ``memory.write``
verdict), an error frame (its code), a lost connection or no answer in time. The model
is asked per call, so traffic can move off a provider a fault is about to hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

GATEWAY = "ws://127.0.0.1:8079"
# The stack's call timeout is 40 s (conftest): a call still open after this is lost.
CLIENT_TIMEOUT_S = 60.0
CALLS_PER_CONVERSATION = 8
PROMISED = frozenset({"stored", "pending"})


@dataclass
class Call:
    continuation_id: str
    prompt: str
    model: str
    stream: bool
    started: float
    ended: float | None = None
    # "ack" (call_tool_res), an error code, "connection_lost" or "client_timeout".
    outcome: str = "running"
    answer: str | None = None
    # The gateway's verdict on storing the exchange (metadata.memory.write): stored, or
    # pending (the write goes on after the answer, same idempotency keys), or failed.
    memory_write: str | None = None
    chunks: int = 0
    detail: str = ""  # why a call ended without an answer, when the client knows

    @property
    def acknowledged(self) -> bool:
        return self.outcome == "ack"

    @property
    def promised(self) -> bool:
        """Acknowledged, and the gateway said the exchange is (or will be) stored."""
        return self.acknowledged and self.memory_write in PROMISED

    @property
    def streaming_now(self) -> bool:
        return self.ended is None and self.chunks > 0


@dataclass
class Traffic:
    """`workers` connections calling until :meth:`stop`; `pause_s` between calls."""

    name: str
    token: str
    model: Callable[[], str]
    workers: int
    pause_s: float = 0.0
    stream_share: float = 0.75
    calls: list[Call] = field(default_factory=list)
    # Anything unexpected a worker met (a bad frame, a refused hello): must stay empty.
    failures: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def session_ids(self) -> list[str]:
        return [f"{self.name}-{self._run}-w{i}" for i in range(self.workers)]

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._worker(i, sid), name=f"{self.name} worker {i}")
            for i, sid in enumerate(self.session_ids)
        ]

    async def stop(self) -> None:
        """Let every call in flight end (or time out), then close the connections."""
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def streaming_now(self) -> int:
        return sum(call.streaming_now for call in self.calls)

    def acknowledged(self, since: float = 0.0) -> list[Call]:
        return [c for c in self.calls if c.acknowledged and c.started >= since]

    def stored_acks(self, since: float = 0.0) -> list[Call]:
        return [c for c in self.acknowledged(since) if c.promised]

    def errors(self) -> Counter[str]:
        return Counter(c.outcome for c in self.calls if c.ended and not c.acknowledged)

    async def _worker(self, index: int, session_id: str) -> None:
        number = 0
        current: Call | None = None
        while not self._stop.is_set():
            try:
                async with connect(GATEWAY, max_size=8 * 1024 * 1024) as ws:
                    await ws.send(
                        json.dumps({"op": "hello", "token": self.token, "session_id": session_id})
                    )
                    ack = json.loads(await asyncio.wait_for(ws.recv(), 15))
                    if not ack.get("ok"):
                        raise RuntimeError(f"hello refused: {ack}")
                    while not self._stop.is_set():
                        conversation = f"{session_id}-c{number // CALLS_PER_CONVERSATION}"
                        stream = (number % 4) < round(self.stream_share * 4)
                        call = Call(
                            conversation,
                            f"fault {self.name} {number} {uuid.uuid4().hex[:12]} answer briefly",
                            self.model(),
                            stream,
                            time.monotonic(),
                        )
                        number += 1
                        self.calls.append(call)
                        current = call
                        await self._call(ws, call)
                        if self.pause_s:
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(self._stop.wait(), self.pause_s)
            except (ConnectionClosed, OSError, TimeoutError) as exc:
                # The gateway stays up in every fault: a lost connection is recorded on
                # the call it interrupted (if any), and the worker reconnects.
                self._interrupted(current, "connection_lost", exc)
            except Exception as exc:
                self._interrupted(current, "client_failure", exc)
                self.failures.append(f"{session_id}: {exc!r}")

    def _interrupted(self, call: Call | None, outcome: str, exc: BaseException) -> None:
        if call is not None and call.ended is None:
            call.outcome, call.ended = outcome, time.monotonic()
            call.detail = repr(exc)[:200]

    async def _call(self, ws: ClientConnection, call: Call) -> None:
        request_id = uuid.uuid4().hex
        frame: dict[str, Any] = {
            "op": "call_tool",
            "request_id": request_id,
            "name": "chat",
            "arguments": {
                "prompt": call.prompt,
                "model": call.model,
                "continuation_id": call.continuation_id,
            },
            "stream": call.stream,
        }
        await ws.send(json.dumps(frame))
        deadline = call.started + CLIENT_TIMEOUT_S
        try:
            while True:
                remaining = deadline - time.monotonic()
                reply = json.loads(await asyncio.wait_for(ws.recv(), max(remaining, 0.01)))
                if reply.get("request_id") != request_id:
                    continue
                op = reply.get("op")
                if op == "stream_chunk":
                    call.chunks += 1
                elif op == "call_tool_res":
                    call.outcome = "ack"
                    call.answer = "".join(o.get("text", "") for o in reply.get("outputs", []))
                    memory = (reply.get("metadata") or {}).get("memory") or {}
                    call.memory_write = memory.get("write")
                    break
                elif op == "error":
                    error = reply.get("error") or {}
                    call.outcome = str(error.get("code", "error"))
                    call.detail = str(error.get("message", ""))[:200]
                    break
        except TimeoutError:
            call.outcome = "client_timeout"
            # Give the call back: a stuck call must not hold its slot for good.
            await ws.send(json.dumps({"op": "cancel", "request_id": request_id}))
        call.ended = time.monotonic()


@dataclass(frozen=True)
class GatewayStatus:
    """The gateway's counters as its `status` tool reports them, without the asking
    connection and its `status` call (which holds a slot of its session while it runs)."""

    session_inflight: int
    global_inflight: int
    connections: int


async def gateway_status(token: str, session_id: str) -> GatewayStatus:
    async with connect(GATEWAY) as ws:
        await ws.send(json.dumps({"op": "hello", "token": token, "session_id": session_id}))
        json.loads(await ws.recv())
        request_id = uuid.uuid4().hex
        call = {"op": "call_tool", "request_id": request_id, "name": "status", "arguments": {}}
        await ws.send(json.dumps(call))
        while True:
            reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if reply.get("request_id") == request_id and reply["op"] in ("call_tool_res", "error"):
                break
    if reply["op"] != "call_tool_res":
        raise AssertionError(f"status call failed: {reply}")
    report = reply["metadata"]
    return GatewayStatus(
        int(report["inflight"]["session"]) - 1,
        int(report["inflight"]["global"]) - 1,
        int(report["connections"]["open"]) - 1,
    )
