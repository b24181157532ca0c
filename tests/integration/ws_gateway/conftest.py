"""Fixtures: the full stack per test (see `stack.py`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.ws_gateway.stack import Stack, running_stack
from tests.support.telemetry import CapturedTelemetry


@pytest.fixture
async def stack(captured: CapturedTelemetry, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(captured, tmp_path) as running:
        yield running
