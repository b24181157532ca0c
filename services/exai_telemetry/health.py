"""The health document every service serves (DESIGN §2).

`/health/live`: the process answers. `/health/ready`: 200 only when every *required*
component answers. `/health`: JSON with `status` healthy|degraded|unhealthy — an
optional component that is down (Redis) degrades, a required one makes it unhealthy.

Probing is not free (a database round trip, a call to another service), and health
endpoints are hit by anyone who can reach them: a :class:`HealthCache` runs one probe
for every request that arrives while it runs, and may reuse its result for a TTL.
Components carry details (error text, latency, addresses) for operators; a public
endpoint renders statuses only (`as_json(details=False)`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from opentelemetry.instrumentation.utils import suppress_instrumentation

HealthStatus = Literal["healthy", "degraded", "unhealthy"]
CHECK_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ComponentHealth:
    up: bool
    required: bool = True
    detail: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self, details: bool = True) -> dict[str, Any]:
        status = {"status": "up" if self.up else "down", "required": self.required}
        return {**status, **self.detail} if details else status


HealthCheck = Callable[[], Awaitable[ComponentHealth]]


@dataclass(frozen=True)
class Probe:
    """A named dependency check; `required=False` means down degrades, not unready."""

    name: str
    check: HealthCheck
    required: bool = True


@dataclass(frozen=True)
class HealthReport:
    status: HealthStatus
    version: str
    components: Mapping[str, ComponentHealth]

    @property
    def ready(self) -> bool:
        return self.status != "unhealthy"

    def as_json(self, details: bool = True) -> dict[str, Any]:
        return {
            "status": self.status,
            "version": self.version,
            "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "components": {name: c.as_json(details) for name, c in self.components.items()},
        }


def overall_status(components: Mapping[str, ComponentHealth]) -> HealthStatus:
    if any(not c.up and c.required for c in components.values()):
        return "unhealthy"
    if any(not c.up for c in components.values()):
        return "degraded"
    return "healthy"


async def _run(probe: Probe) -> ComponentHealth:
    started = time.perf_counter()
    try:
        # Probes run every few seconds; their Redis/DB/HTTP calls would otherwise become
        # a stream of orphan root spans (the health routes themselves are not traced).
        with suppress_instrumentation():
            result = await asyncio.wait_for(probe.check(), CHECK_TIMEOUT_S)
    except Exception as exc:  # a failing check is a finding, not a crash
        return ComponentHealth(False, probe.required, {"error": type(exc).__name__})
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    return ComponentHealth(result.up, probe.required, {"latency_ms": latency_ms, **result.detail})


async def evaluate(probes: Sequence[Probe], version: str) -> HealthReport:
    results = await asyncio.gather(*(_run(p) for p in probes))
    components = {p.name: r for p, r in zip(probes, results, strict=True)}
    return HealthReport(overall_status(components), version, components)


class HealthCache:
    """One evaluation of `probes()` shared by every request that arrives while it runs,
    and reused for `ttl_s` after it finished (0: not reused). A requester that goes
    away does not cancel the evaluation the others wait for."""

    def __init__(
        self,
        probes: Callable[[], Sequence[Probe]],
        version: str,
        ttl_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probes = probes
        self._version = version
        self._ttl_s = ttl_s
        self._clock = clock
        self._last: tuple[float, HealthReport] | None = None
        self._running: asyncio.Task[HealthReport] | None = None

    async def report(self) -> HealthReport:
        if self._last is not None and self._clock() - self._last[0] < self._ttl_s:
            return self._last[1]
        if self._running is None:
            self._running = asyncio.create_task(self._evaluate(), name="health probes")
        return await asyncio.shield(self._running)

    async def _evaluate(self) -> HealthReport:
        try:
            report = await evaluate(self._probes(), self._version)
            self._last = (self._clock(), report)
            return report
        finally:
            self._running = None
