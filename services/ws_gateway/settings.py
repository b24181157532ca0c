"""`GatewaySettings`: everything the gateway reads from the environment (DESIGN §2)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from exai_telemetry.settings import ServiceSettings

# Values people paste from examples; refused outside development. Compared case- and
# punctuation-blind; the markers also catch them repeated or padded to the minimum length.
PLACEHOLDER_TOKENS = frozenset(
    {"changeme", "change-me", "change_me", "secret", "token", "password", "placeholder", "test"}
)
PLACEHOLDER_MARKERS = ("changeme", "placeholder", "replaceme", "yourtoken", "example")
# In every environment: a shorter token is weak, and the log/span secret scrubber
# ignores values under 6 characters.
MIN_TOKEN_LENGTH = 16


def _fold(value: str) -> str:
    return re.sub(r"[^a-z0-9]", "", value.lower())


def is_placeholder(token: str) -> bool:
    folded = _fold(token)
    return folded in {_fold(p) for p in PLACEHOLDER_TOKENS} or any(
        marker in folded for marker in PLACEHOLDER_MARKERS
    )


class GatewaySettings(ServiceSettings):
    ws_token: SecretStr = Field(validation_alias="EXAI_WS_TOKEN")
    port: int = Field(default=8079, ge=0, le=65535, validation_alias="EXAI_WS_PORT")
    provider_url: str = Field(default="http://127.0.0.1:8090", validation_alias="EXAI_PROVIDER_URL")
    storage_url: str = Field(default="http://127.0.0.1:8091", validation_alias="EXAI_STORAGE_URL")

    hello_timeout_s: float = Field(default=15.0, gt=0, validation_alias="EXAI_HELLO_TIMEOUT_S")
    call_timeout_s: float = Field(default=120.0, gt=0, validation_alias="EXAI_CALL_TIMEOUT_S")
    storage_timeout_s: float = Field(default=5.0, gt=0, validation_alias="EXAI_STORAGE_TIMEOUT_S")
    max_frame_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, validation_alias="EXAI_MAX_FRAME_BYTES"
    )
    max_inflight_per_session: int = Field(
        default=8, ge=1, validation_alias="EXAI_MAX_INFLIGHT_PER_SESSION"
    )
    max_inflight_global: int = Field(default=64, ge=1, validation_alias="EXAI_MAX_INFLIGHT_GLOBAL")
    max_connections: int = Field(default=256, ge=1, validation_alias="EXAI_MAX_CONNECTIONS")
    ping_interval_s: float = Field(default=30.0, gt=0, validation_alias="EXAI_PING_INTERVAL_S")

    default_model: str = Field(
        default="kimi-k2-0905-preview", min_length=1, validation_alias="EXAI_DEFAULT_MODEL"
    )
    consensus_models: Annotated[list[str], NoDecode] = Field(
        default=["kimi-k2-0905-preview", "glm-4.5"],
        min_length=1,
        validation_alias="EXAI_CONSENSUS_MODELS",
    )

    @field_validator("consensus_models", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("ws_token")
    @classmethod
    def _real_token(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        token = value.get_secret_value()
        if not token.strip():
            raise ValueError("must not be empty")
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters long")
        # `environment` is declared on the base class, so it is validated first.
        if info.data.get("environment", "development") != "development" and is_placeholder(token):
            raise ValueError("a placeholder is allowed only when EXAI_ENVIRONMENT=development")
        return value
