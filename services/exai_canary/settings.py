"""`CanarySettings`: what the canary reads from the environment.

The token: the canary is a client like any other, so it authenticates the way the
gateway's own settings name clients (ws_gateway.auth). When ``EXAI_WS_TOKENS`` or
``EXAI_WS_TOKENS_FILE`` name a client ``canary``, its first token is used, so the
canary's calls (and a chat's spend) are attributed to it; otherwise ``EXAI_WS_TOKEN``
(client ``default``). One of the two is required.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from exai_telemetry.settings import ServiceSettings
from ws_gateway.settings import TokenMapFile, TokenMapText

CANARY_CLIENT_ID = "canary"


class CanarySettings(ServiceSettings):
    # Health endpoints only (/health/live, /health/ready).
    port: int = Field(default=8098, ge=0, le=65535, validation_alias="EXAI_CANARY_PORT")
    gateway_url: str = Field(
        default="ws://127.0.0.1:8079", validation_alias="EXAI_CANARY_GATEWAY_URL"
    )
    # A `status` call this often; each check has EXAI_CANARY_TIMEOUT_S to finish. The
    # alerts assume a check every 15 s (a 2-minute window holds eight).
    interval_s: float = Field(default=15.0, gt=0, le=300, validation_alias="EXAI_CANARY_INTERVAL_S")
    timeout_s: float = Field(default=10.0, gt=0, le=300, validation_alias="EXAI_CANARY_TIMEOUT_S")
    # A `chat` on this model every EXAI_CANARY_CHAT_INTERVAL_S; unset (the default): no
    # chat check at all. Every chat is a billed provider call: pick a cheap model.
    chat_model: str | None = Field(
        default=None, max_length=128, validation_alias="EXAI_CANARY_CHAT_MODEL"
    )
    chat_interval_s: float = Field(
        default=60.0, gt=0, le=3600, validation_alias="EXAI_CANARY_CHAT_INTERVAL_S"
    )
    # An LLM answer takes 10-60 s; the gateway gives up after EXAI_CALL_TIMEOUT_S (120 s).
    chat_timeout_s: float = Field(
        default=90.0, gt=0, le=600, validation_alias="EXAI_CANARY_CHAT_TIMEOUT_S"
    )

    ws_token: SecretStr | None = Field(default=None, validation_alias="EXAI_WS_TOKEN")
    ws_tokens: TokenMapText = Field(default_factory=dict, validation_alias="EXAI_WS_TOKENS")
    ws_tokens_file: TokenMapFile = Field(
        default_factory=dict, validation_alias="EXAI_WS_TOKENS_FILE"
    )

    @field_validator("chat_model", "ws_token", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # docker-compose.yml passes optional settings as `${VAR:-}`.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("gateway_url")
    @classmethod
    def _websocket_url(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://")):
            raise ValueError("must be a ws:// or wss:// URL")
        return value

    @model_validator(mode="after")
    def _has_a_token(self) -> Self:
        if self.client_token() is None:
            raise ValueError(
                f"no client token: set EXAI_WS_TOKEN, or name a client {CANARY_CLIENT_ID!r}"
                " in EXAI_WS_TOKENS or EXAI_WS_TOKENS_FILE"
            )
        return self

    def client_token(self) -> tuple[str, SecretStr] | None:
        """(client id, token) the canary says hello with: its own client when one is
        configured, else the default one."""
        named = {**self.ws_tokens_file, **self.ws_tokens}.get(CANARY_CLIENT_ID)
        if named:
            return CANARY_CLIENT_ID, named[0]
        if self.ws_token is not None:
            return "default", self.ws_token
        return None

    def secret_values(self) -> list[str]:
        values = super().secret_values()
        for tokens in [*self.ws_tokens_file.values(), *self.ws_tokens.values()]:
            values.extend(token.get_secret_value() for token in tokens)
        return values
