"""What an operator can change at run time (faults, latency) and what the simulator saw.

:class:`SimulatorState` is owned by one app instance (two simulators in one test
process never share it). Everything here is plain data and decisions, no I/O.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from llm_simulator.errors import ApiError, ErrorKind
from llm_simulator.ratelimit import RateLimitWindows
from llm_simulator.settings import SimulatorSettings
from llm_simulator.types import FAULT_HEADER, FaultMode, ProviderName


@dataclass(frozen=True)
class FaultConfig:
    """The global fault: `mode` hits a share `rate` of the requests to `provider` (or all)."""

    mode: FaultMode = FaultMode.NONE
    rate: float = 1.0
    provider: ProviderName | None = None
    retry_after_s: int = 1

    def as_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value,
            "rate": self.rate,
            "provider": self.provider,
            "retry_after_s": self.retry_after_s,
        }


@dataclass(frozen=True)
class Latency:
    ms: float = 0.0
    tokens_per_s: float = 200.0  # 0 = unpaced

    def as_json(self) -> dict[str, Any]:
        return {"ms": self.ms, "tokens_per_s": self.tokens_per_s}


@dataclass
class Stats:
    """Counters tests and demos read through `GET /admin/stats`."""

    requests: Counter[str] = field(default_factory=Counter)  # chat requests received, by provider
    faults: Counter[str] = field(default_factory=Counter)  # injected faults by mode
    hanging: int = 0  # requests inside a `hang` right now
    streaming: int = 0  # SSE streams open right now
    disconnects: int = 0  # clients that left before the answer was complete

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "faults": dict(self.faults),
            "hanging": self.hanging,
            "streaming": self.streaming,
            "disconnects": self.disconnects,
        }


@dataclass(frozen=True)
class SeenHeaders:
    """The header *names* of the last chat request (never values: one is a bearer key)."""

    provider: ProviderName
    names: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {"provider": self.provider, "header_names": list(self.names)}


def parse_fault_header(value: str) -> FaultMode:
    try:
        return FaultMode(value.strip().lower())
    except ValueError:
        allowed = ", ".join(m.value for m in FaultMode)
        raise ApiError(
            ErrorKind.BAD_REQUEST, f"unknown {FAULT_HEADER} value; expected one of: {allowed}"
        ) from None


class SimulatorState:
    def __init__(self, settings: SimulatorSettings) -> None:
        self._settings = settings
        self._rng = random.Random()
        self.faults = FaultConfig()
        self.latency = Latency()
        self.stats = Stats()
        self.last_headers: SeenHeaders | None = None
        self.rate_limits = RateLimitWindows(
            settings.ratelimit_requests, settings.ratelimit_tokens, settings.ratelimit_window_s
        )
        self.reset()

    def reset(self) -> None:
        """Back to the configured start-up state, counters cleared."""
        s = self._settings
        self.configure_faults(s.fault_mode, s.fault_rate, s.fault_provider)
        self.latency = Latency(s.latency_ms, s.tokens_per_s)
        self.stats = Stats()
        self.last_headers = None
        self.rate_limits.reset()

    def note_headers(self, provider: ProviderName, names: Iterable[str]) -> None:
        """Remember which headers the last chat request carried (names only)."""
        self.last_headers = SeenHeaders(provider, tuple(sorted({n.lower() for n in names})))

    def configure_faults(
        self,
        mode: FaultMode,
        rate: float = 1.0,
        provider: ProviderName | None = None,
        retry_after_s: int | None = None,
    ) -> FaultConfig:
        """Replace the global fault; mode `none` clears it whatever the other fields say."""
        if retry_after_s is None:
            retry_after_s = self._settings.retry_after_s
        if mode is FaultMode.NONE:
            self.faults = FaultConfig(retry_after_s=retry_after_s)
        else:
            self.faults = FaultConfig(mode, rate, provider, retry_after_s)
        # Re-seeding here makes a seeded run's fault sequence start afresh with each
        # new configuration, whatever traffic came before.
        self._rng.seed(self._settings.fault_seed)
        return self.faults

    def update_latency(self, ms: float | None, tokens_per_s: float | None) -> None:
        if ms is not None:
            self.latency = replace(self.latency, ms=ms)
        if tokens_per_s is not None:
            self.latency = replace(self.latency, tokens_per_s=tokens_per_s)

    def choose_fault(self, provider: ProviderName, header: str | None) -> FaultMode:
        """The fault for one request: the header wins (`none` bypasses the global fault)."""
        if header is not None:
            return parse_fault_header(header)
        faults = self.faults
        if faults.mode is FaultMode.NONE:
            return FaultMode.NONE
        if faults.provider is not None and faults.provider != provider:
            return FaultMode.NONE
        return faults.mode if self._rng.random() < faults.rate else FaultMode.NONE
