from __future__ import annotations

import json
from pathlib import Path

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


# --- limits (issue 8, point 7) ----------------------------------------------------------


def test_limit_defaults() -> None:
    settings = build(EXAI_WS_TOKEN=STRONG)
    assert settings.max_hello_frame_bytes == 8 * 1024
    assert settings.max_unauthenticated == 64 < settings.max_connections
    assert settings.ws_max_queue == 4
    assert (settings.ws_rate_per_s, settings.ws_rate_burst) == (50, 100)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EXAI_MAX_HELLO_FRAME_BYTES", "100"),
        ("EXAI_MAX_UNAUTHENTICATED", "0"),
        ("EXAI_WS_MAX_QUEUE", "0"),
        ("EXAI_WS_RATE_PER_S", "0"),
        ("EXAI_WS_RATE_PER_S", "fast"),
        ("EXAI_WS_RATE_BURST", "0"),
    ],
)
def test_bad_limits_name_their_variable(name: str, value: str) -> None:
    with pytest.raises(ValidationError) as info:
        build(EXAI_WS_TOKEN=STRONG, **{name: value})
    assert describe_validation_error(GatewaySettings, info.value).startswith(
        f"invalid setting {name}:"
    )


# --- client tokens (issue 8, point 12) --------------------------------------------------

ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789"


def test_ws_token_alone_is_client_default() -> None:
    tokens = build(EXAI_WS_TOKEN=STRONG).client_tokens()
    assert tokens.client_for(STRONG) == "default" and len(tokens) == 1


def test_tokens_from_the_environment_map_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"alice": ALICE, "bob": [BOB, BOB + "-next"]}))
    carol = "carol-token-0123456789"
    settings = build(EXAI_WS_TOKENS_FILE=str(path), EXAI_WS_TOKENS=json.dumps({"carol": carol}))
    assert settings.ws_token is None
    tokens = settings.client_tokens()
    assert [tokens.client_for(t) for t in (ALICE, BOB, BOB + "-next", carol, STRONG)] == [
        "alice",
        "bob",
        "bob",
        "carol",
        None,
    ]
    # Every token is a registered secret (the log and span scrubbers know it) …
    assert {ALICE, BOB, BOB + "-next", carol} <= set(settings.secret_values())
    # … and never in the settings' repr.
    assert not any(t in repr(settings) for t in (ALICE, BOB, carol))


def test_the_token_file_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"alice": ALICE}))
    monkeypatch.delenv("EXAI_WS_TOKEN", raising=False)
    monkeypatch.setenv("EXAI_WS_TOKENS_FILE", str(path))
    monkeypatch.setenv("EXAI_WS_TOKENS", json.dumps({"bob": BOB}))
    settings = GatewaySettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.client_tokens().client_ids == {"alice", "bob"}


def bad(**env: str) -> str:
    with pytest.raises(ValidationError) as info:
        build(**env)
    message = describe_validation_error(GatewaySettings, info.value)
    assert not any(t in message for t in (ALICE, BOB, STRONG)), message
    return message


def test_bad_token_maps_name_their_variable(tmp_path: Path) -> None:
    assert bad(EXAI_WS_TOKENS="alice=" + ALICE).startswith("invalid setting EXAI_WS_TOKENS:")
    message = bad(EXAI_WS_TOKENS=json.dumps({"alice": "short"}))
    assert "EXAI_WS_TOKENS" in message and "'alice'" in message and "16 characters" in message
    assert "placeholder" in bad(
        EXAI_WS_TOKENS=json.dumps({"alice": "changeme-changeme"}), EXAI_ENVIRONMENT="production"
    )
    missing = tmp_path / "missing.json"
    assert bad(EXAI_WS_TOKENS_FILE=str(missing)).startswith(
        "invalid setting EXAI_WS_TOKENS_FILE: Value error, cannot read"
    )
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"alice": ALICE}))
    assert "also in EXAI_WS_TOKENS_FILE" in bad(
        EXAI_WS_TOKENS_FILE=str(path), EXAI_WS_TOKENS=json.dumps({"alice": BOB})
    )


def test_a_token_belongs_to_one_client() -> None:
    assert "unique" in bad(EXAI_WS_TOKENS=json.dumps({"alice": ALICE, "bob": ALICE}))
    assert "unique" in bad(EXAI_WS_TOKEN=ALICE, EXAI_WS_TOKENS=json.dumps({"alice": ALICE}))


def test_the_map_must_not_name_client_default_when_ws_token_is_set() -> None:
    message = bad(EXAI_WS_TOKEN=STRONG, EXAI_WS_TOKENS=json.dumps({"default": ALICE}))
    assert message.startswith("invalid setting EXAI_WS_TOKEN:") and "'default'" in message


def test_some_token_is_required() -> None:
    for env in ({}, {"EXAI_WS_TOKEN": ""}, {"EXAI_WS_TOKENS": ""}, {"EXAI_WS_TOKENS_FILE": " "}):
        message = bad(**env)
        assert message.startswith("invalid setting EXAI_WS_TOKEN:")
        assert "EXAI_WS_TOKENS_FILE" in message
