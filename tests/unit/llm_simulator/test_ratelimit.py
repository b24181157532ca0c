"""The simulator's x-ratelimit-* headers: deterministic windows per provider."""

from __future__ import annotations

from llm_simulator.ratelimit import RateLimitWindows
from llm_simulator.settings import SimulatorSettings
from llm_simulator.state import SimulatorState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_request_and_its_tokens_count_within_the_window() -> None:
    clock = Clock()
    windows = RateLimitWindows(10, 1000, 60, clock)
    first = windows.spend("kimi", tokens=100)
    assert first == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "9",
        "x-ratelimit-reset-requests": "60s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "900",
        "x-ratelimit-reset-tokens": "60s",
    }
    clock.now += 15
    second = windows.spend("kimi", tokens=950)
    assert second["x-ratelimit-remaining-requests"] == "8"
    assert second["x-ratelimit-remaining-tokens"] == "0"  # never below 0
    assert second["x-ratelimit-reset-requests"] == "45s"
    # Another provider has its own window.
    assert windows.spend("glm", tokens=1)["x-ratelimit-remaining-requests"] == "9"
    clock.now += 45  # the window is over: a fresh one
    assert windows.spend("kimi", tokens=0)["x-ratelimit-remaining-requests"] == "9"


def test_a_429_reports_no_requests_left_and_a_zero_limit_sends_nothing() -> None:
    windows = RateLimitWindows(10, 0, 60, Clock())
    headers = windows.exhausted("kimi")
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert not [name for name in headers if name.endswith("-tokens")]
    assert RateLimitWindows(0, 0, 60).spend("kimi", tokens=5) == {}


def test_configured_from_the_environment_and_cleared_by_reset() -> None:
    settings = SimulatorSettings.model_validate(
        {"SIM_RATELIMIT_REQUESTS": "3", "SIM_RATELIMIT_TOKENS": "0", "SIM_RATELIMIT_WINDOW_S": "5"}
    )
    state = SimulatorState(settings)
    assert state.rate_limits.spend("kimi")["x-ratelimit-remaining-requests"] == "2"
    state.reset()
    assert state.rate_limits.spend("kimi")["x-ratelimit-remaining-requests"] == "2"
