"""CanarySettings: which token the canary says hello with, and what it refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from exai_canary.runner import checks_for
from exai_canary.settings import CanarySettings
from exai_telemetry.settings import describe_validation_error

DEFAULT_TOKEN = "default-token-0123456789abcdef"
CANARY_TOKEN = "canary-token-0123456789abcdef"


def settings(**env: Any) -> CanarySettings:
    return CanarySettings.model_validate(env)


def test_its_own_client_is_preferred_when_the_gateway_names_one() -> None:
    chosen = settings(
        EXAI_WS_TOKEN=DEFAULT_TOKEN,
        EXAI_WS_TOKENS=json.dumps({"canary": [CANARY_TOKEN, "next-" + CANARY_TOKEN]}),
    ).client_token()
    assert chosen is not None
    assert (chosen[0], chosen[1].get_secret_value()) == ("canary", CANARY_TOKEN)


def test_the_token_file_names_the_client_as_well(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"ide": "ide-token-0123456789", "canary": CANARY_TOKEN}))
    chosen = settings(EXAI_WS_TOKENS_FILE=str(path)).client_token()
    assert chosen is not None and chosen[0] == "canary"


def test_without_a_canary_client_it_is_the_default_one() -> None:
    chosen = settings(
        EXAI_WS_TOKEN=DEFAULT_TOKEN, EXAI_WS_TOKENS=json.dumps({"ide": "ide-token-0123456789"})
    ).client_token()
    assert chosen is not None
    assert (chosen[0], chosen[1].get_secret_value()) == ("default", DEFAULT_TOKEN)


def test_no_token_at_all_is_refused_without_quoting_any() -> None:
    with pytest.raises(ValidationError) as caught:
        settings(EXAI_WS_TOKEN=" ", EXAI_WS_TOKENS=json.dumps({"ide": "ide-token-0123456789"}))
    message = describe_validation_error(CanarySettings, caught.value)
    assert "EXAI_WS_TOKEN" in message and "canary" in message
    assert "ide-token" not in message


def test_every_token_is_a_secret_for_the_redaction_registry() -> None:
    values = settings(
        EXAI_WS_TOKEN=DEFAULT_TOKEN, EXAI_WS_TOKENS=json.dumps({"canary": CANARY_TOKEN})
    ).secret_values()
    assert {DEFAULT_TOKEN, CANARY_TOKEN} <= set(values)


def test_the_gateway_url_must_be_a_websocket_url() -> None:
    with pytest.raises(ValidationError) as caught:
        settings(EXAI_WS_TOKEN=DEFAULT_TOKEN, EXAI_CANARY_GATEWAY_URL="http://127.0.0.1:8079")
    assert "EXAI_CANARY_GATEWAY_URL" in describe_validation_error(CanarySettings, caught.value)


def test_defaults_check_status_every_15_s_and_never_chat() -> None:
    loaded = settings(EXAI_WS_TOKEN=DEFAULT_TOKEN, EXAI_CANARY_CHAT_MODEL="")
    assert loaded.chat_model is None
    (status,) = checks_for(loaded)
    assert (status.name, status.tool, status.interval_s) == ("status", "status", 15.0)
    assert status.timeout_s < status.interval_s


def test_a_chosen_chat_model_adds_a_chat_check_on_its_own_schedule() -> None:
    loaded = settings(EXAI_WS_TOKEN=DEFAULT_TOKEN, EXAI_CANARY_CHAT_MODEL="glm-4.5-flash")
    status, chat = checks_for(loaded)
    assert chat.name == "chat" and chat.arguments["model"] == "glm-4.5-flash"
    assert "continuation_id" not in chat.arguments  # nothing stored per check
    assert chat.interval_s == 60.0 and chat.timeout_s > status.timeout_s
