"""The shared health cache: one probe run for concurrent requests, reused for a TTL;
the public rendering carries statuses only."""

from __future__ import annotations

import asyncio

from exai_telemetry.health import ComponentHealth, HealthCache, Probe, evaluate


class Counting:
    def __init__(self, delay_s: float = 0.0, up: bool = True) -> None:
        self.runs = 0
        self.delay_s = delay_s
        self.up = up

    async def __call__(self) -> ComponentHealth:
        self.runs += 1
        await asyncio.sleep(self.delay_s)
        return ComponentHealth(self.up, detail={"error": "db at 10.0.0.7:5432 refused"})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_requests_share_one_probe_run() -> None:
    check = Counting(delay_s=0.05)
    cache = HealthCache(lambda: [Probe("db", check)], "1.0", ttl_s=0.0)
    reports = await asyncio.gather(*(cache.report() for _ in range(20)))
    assert check.runs == 1
    assert len({id(r) for r in reports}) == 1
    await cache.report()  # no TTL: the next request probes again
    assert check.runs == 2


async def test_a_result_is_reused_for_the_ttl() -> None:
    check = Counting()
    clock = Clock()
    cache = HealthCache(lambda: [Probe("db", check)], "1.0", ttl_s=1.0, clock=clock)
    await cache.report()
    clock.now = 0.9
    await cache.report()
    assert check.runs == 1
    clock.now = 1.01
    await cache.report()
    assert check.runs == 2


async def test_a_cancelled_request_does_not_cancel_the_shared_probe() -> None:
    check = Counting(delay_s=0.05)
    cache = HealthCache(lambda: [Probe("db", check)], "1.0")
    first = asyncio.create_task(cache.report())
    await asyncio.sleep(0.01)
    second = asyncio.create_task(cache.report())
    first.cancel()
    report = await second
    assert report.status == "healthy" and check.runs == 1


async def test_the_public_rendering_has_statuses_only() -> None:
    report = await evaluate(
        [Probe("db", Counting(up=False)), Probe("cache", Counting(), required=False)], "1.0"
    )
    public = report.as_json(details=False)
    assert public["status"] == "unhealthy"
    assert public["components"] == {
        "db": {"status": "down", "required": True},
        "cache": {"status": "up", "required": False},
    }
    detailed = report.as_json()
    assert detailed["components"]["db"]["error"] == "db at 10.0.0.7:5432 refused"
    assert "latency_ms" in detailed["components"]["cache"]
