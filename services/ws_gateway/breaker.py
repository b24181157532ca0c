"""A circuit breaker for one dependency (the gateway's storage-adapter client).

A dependency that keeps failing is not waited on by every call: after `failures`
failures in a row the circuit is *open* and calls are refused at once; after `reset_s`
one trial call goes through (*half open*), and its outcome closes or re-opens it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal

logger = logging.getLogger(__name__)

CircuitState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """The caller reports each call's verdict: :meth:`failed` only for failures of the
    dependency (no answer, 5xx), :meth:`succeeded` for any answer (a 4xx included),
    :meth:`abandoned` for a call cut short by its own caller."""

    def __init__(
        self,
        failures: int,
        reset_s: float,
        *,
        name: str = "dependency",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._threshold = failures
        self._reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._opened_at = 0.0
        self._trial_running = False
        self.state: CircuitState = "closed"

    def allow(self) -> bool:
        if self.state == "closed":
            return True
        if self.state == "open":
            if self._clock() - self._opened_at < self._reset_s:
                return False
            self.state = "half_open"
        if self._trial_running:
            return False
        self._trial_running = True
        return True

    def succeeded(self) -> None:
        if self.state != "closed":
            logger.info("%s circuit closed", self.name)
        self.state, self._failures, self._trial_running = "closed", 0, False

    def failed(self) -> None:
        self._failures += 1
        self._trial_running = False
        if self.state == "half_open" or self._failures >= self._threshold:
            if self.state != "open":
                logger.warning("%s circuit open for %gs", self.name, self._reset_s)
            self.state, self._opened_at = "open", self._clock()

    def abandoned(self) -> None:
        """The call ended without a verdict (its caller was cancelled)."""
        self._trial_running = False
