"""In-flight counters stay exact whatever way a call ends."""

from __future__ import annotations

import asyncio
import random

import pytest

from ws_gateway.errors import OverCapacity
from ws_gateway.limits import ConnectionLimiter, InflightLimiter, TokenBucket


def test_per_session_cap_then_global_cap() -> None:
    limiter = InflightLimiter(per_session=2, global_max=3)
    with limiter.slot("a"), limiter.slot("a"):
        with pytest.raises(OverCapacity, match="session"):
            with limiter.slot("a"):
                pass
        with limiter.slot("b"):
            assert limiter.global_inflight == 3
            with pytest.raises(OverCapacity, match="gateway"):
                with limiter.slot("c"):
                    pass
        assert limiter.session_inflight("a") == 2
    assert limiter.global_inflight == 0
    assert limiter.sessions_with_calls == 0


def test_a_rejected_slot_takes_nothing() -> None:
    limiter = InflightLimiter(per_session=1, global_max=10)
    with limiter.slot("s"):
        for _ in range(5):
            with pytest.raises(OverCapacity):
                with limiter.slot("s"):
                    pass
        assert limiter.global_inflight == 1
    assert limiter.global_inflight == 0


def test_an_error_inside_releases_the_slot() -> None:
    limiter = InflightLimiter(per_session=1, global_max=1)
    with pytest.raises(ValueError), limiter.slot("s"):
        raise ValueError("tool blew up")
    assert limiter.global_inflight == 0 and limiter.session_inflight("s") == 0


async def test_counts_return_to_zero_after_many_cancels_timeouts_and_errors() -> None:
    limiter = InflightLimiter(per_session=8, global_max=64)
    rng = random.Random(7)
    outcomes: dict[str, int] = {"ok": 0, "rejected": 0, "error": 0, "timeout": 0}

    async def call(session: str, mode: str) -> None:
        try:
            with limiter.slot(session):
                if mode == "timeout":
                    async with asyncio.timeout(0.001):
                        await asyncio.sleep(1)
                await asyncio.sleep(rng.random() / 100)
                if mode == "error":
                    raise RuntimeError("boom")
        except OverCapacity:
            outcomes["rejected"] += 1
        except RuntimeError:
            outcomes["error"] += 1
        except TimeoutError:
            outcomes["timeout"] += 1
        else:
            outcomes["ok"] += 1

    tasks = [
        asyncio.create_task(call(f"s{i % 12}", rng.choice(["ok", "error", "timeout", "hang"])))
        for i in range(400)
    ]
    await asyncio.sleep(0.002)
    assert 0 < limiter.global_inflight <= 64
    for task in tasks:
        if rng.random() < 0.5:  # clients cancelling and disconnecting mid-call
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert limiter.global_inflight == 0
    assert limiter.sessions_with_calls == 0
    assert outcomes["rejected"] > 0  # the caps were actually reached


async def test_wait_idle_returns_when_the_last_call_ends() -> None:
    limiter = InflightLimiter(per_session=2, global_max=2)
    await asyncio.wait_for(limiter.wait_idle(), 0.1)  # idle from the start
    release = asyncio.Event()

    async def hold() -> None:
        with limiter.slot("s"):
            await release.wait()

    task = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(limiter.wait_idle())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    release.set()
    await asyncio.wait_for(waiter, 1)
    await task


def test_connection_limiter_admits_up_to_the_cap() -> None:
    limiter = ConnectionLimiter(2)
    with limiter.admit() as first, limiter.admit() as second:
        assert first and second
        with limiter.admit() as third:
            assert not third
        assert limiter.open == 2
    assert limiter.open == 0


def test_unauthenticated_connections_have_their_own_cap() -> None:
    limiter = ConnectionLimiter(4, max_unauthenticated=2)
    with limiter.admit() as first, limiter.admit() as second:
        assert first is not None and second is not None
        with limiter.admit() as third:
            assert third is None  # a third unauthenticated one: no place
        with limiter.admit(authenticated=True) as mcp:
            assert mcp is not None  # authenticated at the upgrade: room is left for it
            assert (limiter.open, limiter.unauthenticated) == (3, 2)
        first.authenticate()
        first.authenticate()  # twice changes nothing
        assert (limiter.open, limiter.unauthenticated) == (2, 1)
        with limiter.admit() as again:
            assert again is not None
    assert (limiter.open, limiter.unauthenticated) == (0, 0)


def test_the_total_cap_holds_for_authenticated_connections_too() -> None:
    limiter = ConnectionLimiter(1, max_unauthenticated=1)
    with limiter.admit(authenticated=True) as first:
        assert first is not None
        with limiter.admit(authenticated=True) as second:
            assert second is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_rate_and_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, 3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after_s() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.take() and not bucket.take()
    clock.now += 100  # idle time saves up no more than the burst
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_token_bucket_refuses_nonsense(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)
