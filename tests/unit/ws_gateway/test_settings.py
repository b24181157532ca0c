from __future__ import annotations

import pytest
from pydantic import ValidationError

from exai_telemetry.settings import describe_validation_error
from ws_gateway.settings import GatewaySettings

STRONG = "x7Kq2-strong-token-value"


def build(**env: str) -> GatewaySettings:
    return GatewaySettings.model_validate(env)


def test_defaults_follow_the_design() -> None:
    settings = build(EXAI_WS_TOKEN=STRONG)
    assert settings.port == 8079
    assert settings.provider_url == "http://127.0.0.1:8090"
    assert settings.storage_url == "http://127.0.0.1:8091"
    assert settings.hello_timeout_s == 15
    assert settings.max_frame_bytes == 4 * 1024 * 1024
    assert (settings.max_inflight_per_session, settings.max_inflight_global) == (8, 64)
    assert settings.ping_interval_s == 30
    assert len(settings.consensus_models) >= 2
    assert STRONG not in repr(settings)


def test_the_token_is_required_and_named_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXAI_WS_TOKEN", raising=False)
    with pytest.raises(ValidationError) as info:
        GatewaySettings(_env_file=None)  # type: ignore[call-arg]
    assert describe_validation_error(GatewaySettings, info.value).startswith(
        "invalid setting EXAI_WS_TOKEN"
    )


@pytest.mark.parametrize("environment", ["development", "production"])
@pytest.mark.parametrize("token", ["tiny12", "x" * 15, "changeme", "CHANGEME"])
def test_short_tokens_are_refused_in_every_environment(token: str, environment: str) -> None:
    # Short is weak everywhere, and too short for the log/span secret scrubber.
    with pytest.raises(ValidationError) as info:
        build(EXAI_WS_TOKEN=token, EXAI_ENVIRONMENT=environment)
    message = describe_validation_error(GatewaySettings, info.value)
    assert "EXAI_WS_TOKEN" in message and "16 characters" in message
    assert token not in message


def test_a_token_of_the_minimum_length_is_accepted_everywhere() -> None:
    for environment in ("development", "production"):
        settings = build(EXAI_WS_TOKEN="k" * 16, EXAI_ENVIRONMENT=environment)
        assert settings.ws_token.get_secret_value() == "k" * 16


@pytest.mark.parametrize(
    "token", ["changeme" * 2, "PLACEHOLDER-PLACEHOLDER", "your-token-goes-here"]
)
def test_placeholder_tokens_are_refused_outside_development(token: str) -> None:
    with pytest.raises(ValidationError) as info:
        build(EXAI_WS_TOKEN=token, EXAI_ENVIRONMENT="production")
    message = describe_validation_error(GatewaySettings, info.value)
    assert "EXAI_WS_TOKEN" in message and "placeholder" in message and token not in message
    assert build(EXAI_WS_TOKEN=token).ws_token.get_secret_value() == token  # development


def test_an_empty_token_is_refused_even_in_development() -> None:
    with pytest.raises(ValidationError):
        build(EXAI_WS_TOKEN="  ")


def test_consensus_models_from_a_comma_separated_list() -> None:
    settings = build(EXAI_WS_TOKEN=STRONG, EXAI_CONSENSUS_MODELS="kimi-a, glm-b ,")
    assert settings.consensus_models == ["kimi-a", "glm-b"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EXAI_WS_PORT", "70000"),
        ("EXAI_MAX_INFLIGHT_PER_SESSION", "0"),
        ("EXAI_HELLO_TIMEOUT_S", "-1"),
        ("EXAI_MAX_FRAME_BYTES", "ten"),
    ],
)
def test_bad_values_name_their_variable(name: str, value: str) -> None:
    with pytest.raises(ValidationError) as info:
        build(EXAI_WS_TOKEN=STRONG, **{name: value})
    assert describe_validation_error(GatewaySettings, info.value).startswith(
        f"invalid setting {name}:"
    )
