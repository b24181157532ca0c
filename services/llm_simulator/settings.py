"""llm-simulator settings: port, pacing and fault defaults, all from the environment."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from exai_telemetry import internal_auth
from exai_telemetry.settings import ServiceSettings
from llm_simulator.types import FaultMode, ProviderName


class SimulatorSettings(ServiceSettings):
    port: int = Field(default=8099, ge=1, le=65535, validation_alias="EXAI_LLM_SIMULATOR_PORT")

    # Who may call /admin/*: `Authorization: Bearer <token>` (exai_telemetry.internal_auth).
    # The `_file` field holds the token read from EXAI_SIMULATOR_ADMIN_TOKEN_FILE.
    simulator_admin_token_file: SecretStr | None = Field(
        default=None, validation_alias="EXAI_SIMULATOR_ADMIN_TOKEN_FILE"
    )
    simulator_admin_token: SecretStr | None = Field(
        default=None, validation_alias="EXAI_SIMULATOR_ADMIN_TOKEN", validate_default=True
    )

    # Pacing; both can be changed at run time through POST /admin/latency.
    latency_ms: float = Field(
        default=0.0, ge=0, allow_inf_nan=False, validation_alias="SIM_LATENCY_MS"
    )
    tokens_per_s: float = Field(
        default=200.0, ge=0, allow_inf_nan=False, validation_alias="SIM_TOKENS_PER_S"
    )  # 0 = stream as fast as possible

    # How each fault behaves.
    slow_tokens_per_s: float = Field(
        default=2.0, gt=0, allow_inf_nan=False, validation_alias="SIM_SLOW_TOKENS_PER_S"
    )
    slow_first_token_s: float = Field(
        default=6.0, gt=0, allow_inf_nan=False, validation_alias="SIM_SLOW_FIRST_TOKEN_S"
    )
    hang_s: float = Field(default=600.0, gt=0, allow_inf_nan=False, validation_alias="SIM_HANG_S")
    retry_after_s: int = Field(default=1, ge=0, le=3600, validation_alias="SIM_RETRY_AFTER_S")
    long_line_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1, le=64 * 1024 * 1024, validation_alias="SIM_LONG_LINE_BYTES"
    )

    # The x-ratelimit-* headers of every chat answer (llm_simulator.ratelimit): per
    # provider, requests and tokens per window; 0 sends none for that resource.
    ratelimit_requests: int = Field(default=500, ge=0, validation_alias="SIM_RATELIMIT_REQUESTS")
    ratelimit_tokens: int = Field(default=200_000, ge=0, validation_alias="SIM_RATELIMIT_TOKENS")
    ratelimit_window_s: float = Field(
        default=60.0, gt=0, allow_inf_nan=False, validation_alias="SIM_RATELIMIT_WINDOW_S"
    )

    # Global fault at start-up (the admin endpoint changes it); a seed makes the
    # per-request draws for `rate` < 1 reproducible.
    fault_mode: FaultMode = Field(default=FaultMode.NONE, validation_alias="SIM_FAULT_MODE")
    fault_rate: float = Field(
        default=1.0, ge=0, le=1, allow_inf_nan=False, validation_alias="SIM_FAULT_RATE"
    )
    fault_provider: ProviderName | None = Field(default=None, validation_alias="SIM_FAULT_PROVIDER")
    fault_seed: int | None = Field(default=None, validation_alias="SIM_FAULT_SEED")

    @field_validator("simulator_admin_token", mode="before")
    @classmethod
    def _blank_token_is_unset(cls, value: Any) -> Any:
        return internal_auth.blank_is_unset(value)

    @field_validator("simulator_admin_token_file", mode="before")
    @classmethod
    def _read_token_file(cls, value: Any) -> Any:
        return internal_auth.token_from_file(value)

    @field_validator("simulator_admin_token")
    @classmethod
    def _token_required(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        return internal_auth.resolve_token(cls, value, info)
