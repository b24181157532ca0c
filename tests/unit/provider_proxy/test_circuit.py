"""The circuit breaker state machine, driven by a hand-wound clock."""

from __future__ import annotations

import pytest

from provider_proxy.circuit import Admission, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def breaker(clock: Clock, threshold: int = 3, cooldown_s: float = 10.0) -> CircuitBreaker:
    return CircuitBreaker(threshold, cooldown_s, clock)


def test_opens_after_n_consecutive_failures_and_refuses_calls(clock: Clock) -> None:
    cb = breaker(clock)
    for _ in range(2):
        assert cb.allow() is Admission.CALL
        cb.record_failure()
    assert cb.state == "closed"
    assert cb.allow()
    cb.record_failure()
    assert cb.state == "open"
    assert cb.allow() is Admission.REFUSED
    assert not cb.allow()


def test_a_success_resets_the_consecutive_count(clock: Clock) -> None:
    cb = breaker(clock)
    cb.record_failure()
    cb.record_failure()
    cb.record_success()
    cb.record_failure()
    cb.record_failure()
    assert cb.state == "closed"
    assert cb.consecutive_failures == 2


def test_after_the_cooldown_exactly_one_probe_goes_out(clock: Clock) -> None:
    cb = breaker(clock)
    for _ in range(3):
        cb.record_failure()
    clock.now += 9.9
    assert cb.state == "open"
    assert not cb.allow()
    clock.now += 0.1
    assert cb.state == "half_open"
    assert cb.allow() is Admission.PROBE
    # Everyone else waits for the probe's verdict.
    assert cb.allow() is Admission.REFUSED
    assert cb.state == "half_open"


def test_a_successful_probe_closes_the_circuit(clock: Clock) -> None:
    cb = breaker(clock)
    for _ in range(3):
        cb.record_failure()
    clock.now += 10
    assert cb.allow() is Admission.PROBE
    cb.record_success()
    assert cb.state == "closed"
    assert cb.consecutive_failures == 0
    assert cb.allow() is Admission.CALL
    assert cb.allow() is Admission.CALL


def test_a_failed_probe_reopens_for_a_full_cooldown(clock: Clock) -> None:
    cb = breaker(clock)
    for _ in range(3):
        cb.record_failure()
    clock.now += 10
    assert cb.allow() is Admission.PROBE
    cb.record_failure()
    assert cb.state == "open"
    clock.now += 9.9
    assert not cb.allow()
    clock.now += 0.1
    assert cb.allow() is Admission.PROBE


def test_a_cancelled_probe_hands_its_slot_back(clock: Clock) -> None:
    cb = breaker(clock)
    for _ in range(3):
        cb.record_failure()
    clock.now += 10
    probe = cb.allow()
    assert probe is Admission.PROBE
    cb.release(probe)
    assert cb.allow() is Admission.PROBE


def test_releasing_an_ordinary_call_does_not_free_the_probe_slot(clock: Clock) -> None:
    cb = breaker(clock)
    old_call = cb.allow()
    for _ in range(3):
        cb.record_failure()
    clock.now += 10
    assert cb.allow() is Admission.PROBE
    cb.release(old_call)
    assert cb.allow() is Admission.REFUSED


def test_threshold_one_opens_on_the_first_failure(clock: Clock) -> None:
    cb = breaker(clock, threshold=1)
    cb.record_failure()
    assert cb.state == "open"


def test_nonsense_parameters_are_refused(clock: Clock) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(0, 1.0, clock)
    with pytest.raises(ValueError):
        CircuitBreaker(1, -1.0, clock)
