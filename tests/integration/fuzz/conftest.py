"""The whole application on loopback, once per module, on a background loop: Hypothesis
and Schemathesis drive it synchronously over real sockets.

`EXAI_FUZZ_FRAMES` sets how many WebSocket frames each protocol gets per run (10,000 in
`make test`; `make fuzz` runs ten times more)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.integration.ws_gateway.stack import Stack, running_stack
from tests.support.background import BackgroundLoop
from tests.support.telemetry import CapturedTelemetry

FUZZ_FRAMES = int(os.environ.get("EXAI_FUZZ_FRAMES", "10000"))

# The fuzzer is one very busy client: lift the per-connection rate so it measures
# robustness, not the rate limiter (which has its own tests).
FUZZ_GATEWAY_ENV: dict[str, object] = {"EXAI_WS_RATE_PER_S": 1e9, "EXAI_WS_RATE_BURST": 1_000_000}


class FuzzStack:
    def __init__(self, loop: BackgroundLoop, stack: Stack) -> None:
        self.loop = loop
        self.stack = stack

    @property
    def gateway_url(self) -> str:
        return self.stack.gateway.url

    def idle(self) -> bool:
        gateway = self.stack.gateway
        return self.loop.call(lambda: gateway.limiter.global_inflight == 0)


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzStack]:
    loop = BackgroundLoop()
    try:
        tmp: Path = tmp_path_factory.mktemp("fuzz")
        captured = CapturedTelemetry(InMemorySpanExporter())
        stack = loop.enter(running_stack(captured, tmp, **FUZZ_GATEWAY_ENV))
        yield FuzzStack(loop, stack)
    finally:
        loop.close()
