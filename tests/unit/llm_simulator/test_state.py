"""Which fault a request gets, and what the operator can change at run time."""

from __future__ import annotations

from typing import Any

import pytest

from llm_simulator.errors import ApiError, ErrorKind
from llm_simulator.settings import SimulatorSettings
from llm_simulator.state import SimulatorState
from llm_simulator.types import FaultMode


def make_state(**overrides: Any) -> SimulatorState:
    return SimulatorState(SimulatorSettings(**overrides))


def test_no_fault_by_default() -> None:
    state = make_state()
    assert state.faults.mode is FaultMode.NONE
    assert all(state.choose_fault("kimi", None) is FaultMode.NONE for _ in range(20))


@pytest.mark.parametrize("mode", [m for m in FaultMode])
def test_header_picks_the_fault_for_one_request(mode: FaultMode) -> None:
    state = make_state()
    assert state.choose_fault("glm", mode.value) is mode
    assert state.choose_fault("glm", None) is FaultMode.NONE


def test_header_is_case_and_space_insensitive() -> None:
    assert make_state().choose_fault("kimi", " Rate_Limit ") is FaultMode.RATE_LIMIT


def test_unknown_header_value_is_a_bad_request_listing_the_choices() -> None:
    with pytest.raises(ApiError) as caught:
        make_state().choose_fault("kimi", "explode")
    assert caught.value.kind is ErrorKind.BAD_REQUEST
    assert "rate_limit" in caught.value.message and "malformed" in caught.value.message


def test_header_none_bypasses_the_global_fault() -> None:
    state = make_state()
    state.configure_faults(FaultMode.ERROR_500)
    assert state.choose_fault("kimi", None) is FaultMode.ERROR_500
    assert state.choose_fault("kimi", "none") is FaultMode.NONE


def test_global_fault_can_target_one_provider() -> None:
    state = make_state()
    state.configure_faults(FaultMode.RATE_LIMIT, provider="glm")
    assert state.choose_fault("glm", None) is FaultMode.RATE_LIMIT
    assert state.choose_fault("kimi", None) is FaultMode.NONE


def test_rate_zero_never_and_rate_one_always() -> None:
    state = make_state()
    state.configure_faults(FaultMode.HANG, rate=0.0)
    assert {state.choose_fault("kimi", None) for _ in range(50)} == {FaultMode.NONE}
    state.configure_faults(FaultMode.HANG, rate=1.0)
    assert {state.choose_fault("kimi", None) for _ in range(50)} == {FaultMode.HANG}


def draws(state: SimulatorState, n: int = 40) -> list[FaultMode]:
    return [state.choose_fault("kimi", None) for _ in range(n)]


def test_seeded_rate_gives_a_reproducible_mix() -> None:
    state = make_state(fault_seed=7)
    state.configure_faults(FaultMode.ERROR_500, rate=0.5)
    first = draws(state)
    assert set(first) == {FaultMode.ERROR_500, FaultMode.NONE}
    # Re-configuring restarts the sequence, whatever happened in between.
    state.configure_faults(FaultMode.ERROR_500, rate=0.5)
    assert draws(state) == first
    # Another simulator with the same seed agrees.
    other = make_state(fault_seed=7)
    other.configure_faults(FaultMode.ERROR_500, rate=0.5)
    assert draws(other) == first


def test_mode_none_clears_whatever_else_was_sent() -> None:
    state = make_state()
    state.configure_faults(FaultMode.MALFORMED, rate=0.3, provider="kimi", retry_after_s=9)
    cleared = state.configure_faults(FaultMode.NONE, rate=0.5, provider="glm")
    assert cleared.as_json() == {"mode": "none", "rate": 1.0, "provider": None, "retry_after_s": 1}


def test_retry_after_defaults_to_the_setting() -> None:
    state = make_state(retry_after_s=3)
    assert state.configure_faults(FaultMode.RATE_LIMIT).retry_after_s == 3
    assert state.configure_faults(FaultMode.RATE_LIMIT, retry_after_s=0).retry_after_s == 0


def test_start_up_fault_and_reset() -> None:
    state = make_state(fault_mode="rate_limit", fault_rate=1.0, fault_provider="kimi")
    assert state.choose_fault("kimi", None) is FaultMode.RATE_LIMIT
    state.configure_faults(FaultMode.NONE)
    state.update_latency(ms=50, tokens_per_s=None)
    state.stats.requests["kimi"] += 3
    state.reset()
    assert state.faults.mode is FaultMode.RATE_LIMIT
    assert state.faults.provider == "kimi"
    assert state.latency.ms == 0
    assert state.stats.as_json()["requests"] == {}


def test_latency_updates_only_the_given_fields() -> None:
    state = make_state(latency_ms=10, tokens_per_s=50)
    state.update_latency(ms=None, tokens_per_s=5)
    assert state.latency.as_json() == {"ms": 10, "tokens_per_s": 5}
    state.update_latency(ms=0, tokens_per_s=None)
    assert state.latency.as_json() == {"ms": 0, "tokens_per_s": 5}


def test_last_request_headers_are_names_only_and_reset_clears_them() -> None:
    state = make_state()
    assert state.last_headers is None
    state.note_headers("glm", ["Authorization", "traceparent", "X-Custom", "authorization"])
    assert state.last_headers is not None
    assert state.last_headers.as_json() == {
        "provider": "glm",
        "header_names": ["authorization", "traceparent", "x-custom"],
    }
    state.reset()
    assert state.last_headers is None
