"""provider-proxy settings: JSON maps from the environment, fail-fast with one clear line."""

from __future__ import annotations

import pytest

from exai_telemetry.settings import load_settings
from provider_proxy.settings import ProxySettings
from provider_proxy.usage import ModelPrice

SECRET = "sk-live-never-print-0123456789"


def fails_with(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], **env: str
) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exc:
        load_settings(ProxySettings)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    "variable",
    ["EXAI_MODEL_PROVIDER_MAP", "EXAI_PRICE_TABLE", "EXAI_FALLBACK_MAP", "EXAI_FALLBACK_MODEL_MAP"],
)
def test_bad_json_names_the_variable_in_one_line(
    variable: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    err = fails_with(monkeypatch, capsys, **{variable: "{'kimi-*': 'kimi'", "KIMI_API_KEY": SECRET})
    assert variable in err
    assert "not valid JSON" in err
    assert SECRET not in err


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"EXAI_MODEL_PROVIDER_MAP": '{"gpt-*": "openai"}'}, "EXAI_MODEL_PROVIDER_MAP"),
        ({"EXAI_PRICE_TABLE": '{"glm-4.5": {"input": -1, "output": 1}}'}, "EXAI_PRICE_TABLE"),
        ({"EXAI_PRICE_TABLE": '{"glm-4.5": {"input": 1, "outptu": 1}}'}, "EXAI_PRICE_TABLE"),
        ({"EXAI_FALLBACK_MAP": '{"kimi": "kimi"}'}, "EXAI_FALLBACK_MAP"),
        ({"EXAI_FALLBACK_PROVIDER": "openai"}, "EXAI_FALLBACK_PROVIDER"),
        ({"KIMI_BASE_URL": "api.moonshot.ai/v1"}, "KIMI_BASE_URL"),
        ({"GLM_BASE_URL": "https://user:pw@example.com/v4"}, "GLM_BASE_URL"),
        ({"KIMI_DEADLINE_S": "0"}, "KIMI_DEADLINE_S"),
        ({"EXAI_RETRY_MAX_ATTEMPTS": "0"}, "EXAI_RETRY_MAX_ATTEMPTS"),
        ({"EXAI_CIRCUIT_FAILURE_THRESHOLD": "0"}, "EXAI_CIRCUIT_FAILURE_THRESHOLD"),
        ({"EXAI_PROVIDER_PROXY_PORT": "70000"}, "EXAI_PROVIDER_PROXY_PORT"),
        ({"EXAI_MAX_SSE_LINE_BYTES": "100"}, "EXAI_MAX_SSE_LINE_BYTES"),
        ({"EXAI_MAX_STREAM_BYTES": "lots"}, "EXAI_MAX_STREAM_BYTES"),
        ({"EXAI_UPSTREAM_MAX_CONNECTIONS": "0"}, "EXAI_UPSTREAM_MAX_CONNECTIONS"),
    ],
)
def test_bad_values_name_their_variable(
    env: dict[str, str],
    variable: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert variable in fails_with(monkeypatch, capsys, **env)


def test_production_refuses_to_run_without_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    err = fails_with(monkeypatch, capsys, EXAI_ENVIRONMENT="production", GLM_API_KEY=SECRET)
    assert "KIMI_API_KEY" in err
    assert SECRET not in err


def test_json_maps_and_blank_values_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAI_MODEL_PROVIDER_MAP", '{"my-model": "glm", "kimi-*": "kimi"}')
    monkeypatch.setenv("EXAI_PRICE_TABLE", '{"my-model": {"input": 1.5, "output": 3}}')
    monkeypatch.setenv("EXAI_FALLBACK_MODEL_MAP", '{"kimi-*": "my-model"}')
    # compose passes unset secrets as empty strings: they mean "not configured".
    monkeypatch.setenv("KIMI_API_KEY", "")
    monkeypatch.setenv("EXAI_FALLBACK_PROVIDER", "")
    settings = ProxySettings()
    assert settings.model_provider_map == {"my-model": "glm", "kimi-*": "kimi"}
    assert settings.prices()["my-model"] == ModelPrice(input=1.5, output=3)
    assert "glm-4.5" in settings.prices()  # defaults stay unless overridden
    assert settings.fallback_model_map == {"kimi-*": "my-model"}
    assert settings.kimi_api_key is None
    assert settings.fallback_provider is None
    assert settings.fallbacks() == {}


def test_single_fallback_provider_and_per_provider_map(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAI_FALLBACK_PROVIDER", "glm")
    assert ProxySettings().fallbacks() == {"kimi": "glm"}
    monkeypatch.setenv("EXAI_FALLBACK_MAP", '{"glm": "kimi"}')
    assert ProxySettings().fallbacks() == {"kimi": "glm", "glm": "kimi"}


def test_api_keys_are_secrets_registered_for_redaction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIMI_API_KEY", SECRET)
    settings = ProxySettings()
    assert SECRET not in repr(settings)
    assert SECRET in settings.secret_values()


def test_defaults_point_at_port_8090_and_the_local_simulator() -> None:
    settings = ProxySettings()
    assert settings.port == 8090
    assert settings.simulator_url == "http://127.0.0.1:8099"
    assert settings.model_provider_map == {"kimi-*": "kimi", "moonshot-*": "kimi", "glm-*": "glm"}


def test_what_a_provider_may_send_and_the_pool_are_bounded_by_default() -> None:
    settings = ProxySettings()
    assert settings.max_upstream_body_bytes == 16 * 1024 * 1024
    assert settings.max_sse_line_bytes == 1024 * 1024
    assert settings.max_stream_bytes == 64 * 1024 * 1024
    assert settings.upstream_max_connections == 200
