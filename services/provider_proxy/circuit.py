"""A circuit breaker per provider: a sans-I/O state machine with an injected clock.

::

    closed ──N consecutive failures──▶ open ──cool-down elapsed──▶ half_open
      ▲                                  ▲                            │
      └────────── probe succeeds ────────┼──────── probe fails ───────┘

In `half_open` exactly one caller (the probe) is let through; everyone else is refused
until the probe reports back. A probe that ends without a verdict (the client went
away) hands the slot back with :meth:`CircuitBreaker.release`.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from provider_proxy.types import CircuitStateName

Clock = Callable[[], float]


class Admission(Enum):
    REFUSED = "refused"
    CALL = "call"
    PROBE = "probe"  # the one call let through while half-open

    def __bool__(self) -> bool:
        return self is not Admission.REFUSED


class CircuitBreaker:
    def __init__(self, failure_threshold: int, cooldown_s: float, clock: Clock) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown_s < 0:
            raise ValueError("cooldown_s must not be negative")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state: CircuitStateName = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> CircuitStateName:
        """The state a caller would meet now (an open circuit past its cool-down is
        half-open: the next caller probes)."""
        if self._state == "open" and self._cooled_down():
            return "half_open"
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allow(self) -> Admission:
        """Whether a call may go out now (falsy when refused)."""
        if self._state == "open" and self._cooled_down():
            self._state = "half_open"
            self._probe_in_flight = False
        if self._state == "closed":
            return Admission.CALL
        if self._state == "half_open" and not self._probe_in_flight:
            self._probe_in_flight = True
            return Admission.PROBE
        return Admission.REFUSED

    def record_success(self) -> None:
        self._state = "closed"
        self._failures = 0
        self._probe_in_flight = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._state == "half_open" or self._failures >= self.failure_threshold:
            self._state = "open"
            self._opened_at = self._clock()
        self._probe_in_flight = False

    def release(self, admission: Admission) -> None:
        """A call ended without telling whether the provider works (cancelled)."""
        if admission is Admission.PROBE:
            self._probe_in_flight = False

    def _cooled_down(self) -> bool:
        return self._clock() - self._opened_at >= self.cooldown_s
