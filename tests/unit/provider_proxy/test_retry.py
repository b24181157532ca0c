"""Backoff with full jitter, Retry-After, and the deadline bound — no sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from provider_proxy.errors import (
    UpstreamConnectError,
    UpstreamMalformed,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamTimeout,
)
from provider_proxy.retry import RetryPolicy, parse_retry_after


def top(low: float, high: float) -> float:
    """The largest wait full jitter could pick."""
    return high


def bottom(low: float, high: float) -> float:
    return low


POLICY = RetryPolicy(max_attempts=5, base_delay_s=0.5, max_delay_s=3.0)


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [POLICY.backoff(n, top) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_full_jitter_draws_between_zero_and_the_ceiling() -> None:
    seen: list[tuple[float, float]] = []

    def record(low: float, high: float) -> float:
        seen.append((low, high))
        return (low + high) / 2

    assert POLICY.backoff(3, record) == 1.0
    assert seen == [(0.0, 2.0)]
    for _ in range(200):
        assert 0.0 <= POLICY.backoff(4) <= 3.0


@pytest.mark.parametrize(
    "error",
    [
        UpstreamServerError("kimi", 500),
        UpstreamTimeout("kimi", "read"),
        UpstreamConnectError("kimi", "refused"),
        UpstreamRateLimited("kimi", None),
    ],
)
def test_transient_errors_are_retried(error: UpstreamServerError) -> None:
    assert POLICY.next_delay(1, error, remaining_s=60, jitter=top) == 0.5


@pytest.mark.parametrize(
    "error",
    [UpstreamRejected("glm", 400, "bad"), UpstreamMalformed("glm", "truncated JSON")],
)
def test_errors_a_retry_cannot_fix_are_not_retried(error: UpstreamRejected) -> None:
    assert POLICY.next_delay(1, error, remaining_s=60, jitter=top) is None


def test_attempts_are_bounded() -> None:
    error = UpstreamServerError("kimi", 503)
    assert POLICY.next_delay(4, error, remaining_s=60, jitter=top) == 3.0
    assert POLICY.next_delay(5, error, remaining_s=60, jitter=top) is None


def test_retry_after_is_a_floor_under_the_jitter() -> None:
    error = UpstreamRateLimited("glm", 2.5)
    assert POLICY.next_delay(1, error, remaining_s=60, jitter=bottom) == 2.5
    # A longer jittered wait is kept: Retry-After says "not before".
    small = UpstreamRateLimited("glm", 0.1)
    assert POLICY.next_delay(3, small, remaining_s=60, jitter=top) == 2.0


def test_no_retry_when_the_wait_would_cross_the_deadline() -> None:
    error = UpstreamRateLimited("kimi", 5.0)
    assert POLICY.next_delay(1, error, remaining_s=5.0, jitter=bottom) is None
    assert POLICY.next_delay(1, error, remaining_s=5.2, jitter=bottom) == 5.0
    assert POLICY.next_delay(1, UpstreamServerError("kimi", 500), 0.01, bottom) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [("3", 3.0), (" 0.5 ", 0.5), ("0", 0.0), ("-4", 0.0), ("", None), ("soon", None), (None, None)],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_retry_after_http_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert parse_retry_after(header, now) == 7.0
    past = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(past, now) == 0.0


def test_retry_after_infinite_is_ignored() -> None:
    assert parse_retry_after("inf") is None
    assert parse_retry_after("nan") is None
