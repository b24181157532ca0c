"""Settings come from the documented environment variables; bad ones stop start-up."""

from __future__ import annotations

import pytest

from exai_telemetry.settings import load_settings
from llm_simulator.settings import SimulatorSettings
from llm_simulator.types import FaultMode


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EXAI_LLM_SIMULATOR_PORT", "SIM_LATENCY_MS", "SIM_TOKENS_PER_S", "SIM_FAULT_MODE"):
        monkeypatch.delenv(name, raising=False)
    settings = SimulatorSettings()
    assert settings.port == 8099
    assert settings.latency_ms == 0
    assert settings.tokens_per_s == 200
    assert settings.fault_mode is FaultMode.NONE
    assert settings.retry_after_s == 1


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAI_LLM_SIMULATOR_PORT", "18099")
    monkeypatch.setenv("SIM_LATENCY_MS", "25")
    monkeypatch.setenv("SIM_TOKENS_PER_S", "0")
    monkeypatch.setenv("SIM_SLOW_TOKENS_PER_S", "0.5")
    monkeypatch.setenv("SIM_HANG_S", "30")
    monkeypatch.setenv("SIM_RETRY_AFTER_S", "2")
    monkeypatch.setenv("SIM_FAULT_MODE", "error_500")
    monkeypatch.setenv("SIM_FAULT_RATE", "0.25")
    monkeypatch.setenv("SIM_FAULT_PROVIDER", "glm")
    monkeypatch.setenv("SIM_FAULT_SEED", "42")
    settings = load_settings(SimulatorSettings)
    assert (settings.port, settings.latency_ms, settings.tokens_per_s) == (18099, 25, 0)
    assert (settings.slow_tokens_per_s, settings.hang_s, settings.retry_after_s) == (0.5, 30, 2)
    assert settings.fault_mode is FaultMode.ERROR_500
    assert (settings.fault_rate, settings.fault_provider, settings.fault_seed) == (0.25, "glm", 42)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SIM_FAULT_RATE", "1.5"),
        ("SIM_FAULT_MODE", "explode"),
        ("SIM_FAULT_PROVIDER", "openai"),
        ("SIM_LATENCY_MS", "-1"),
        ("SIM_TOKENS_PER_S", "fast"),
        ("EXAI_LLM_SIMULATOR_PORT", "70000"),
    ],
)
def test_bad_value_stops_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit):
        load_settings(SimulatorSettings)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"invalid setting {name}:" in err
