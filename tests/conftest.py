"""Session-wide real dependencies and per-test in-memory telemetry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.servers import PostgresServer, RedisServer, postgres_server, redis_server
from tests.support.telemetry import CapturedTelemetry


@pytest.fixture
def captured() -> CapturedTelemetry:
    return CapturedTelemetry(InMemorySpanExporter())


@pytest.fixture(scope="session")
def redis_srv() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_srv() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server
