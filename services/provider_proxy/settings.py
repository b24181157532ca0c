"""provider-proxy settings: upstreams, resilience, routing and prices, from the environment.

Maps and tables are JSON in one variable each (`EXAI_MODEL_PROVIDER_MAP`,
`EXAI_FALLBACK_MAP`, `EXAI_FALLBACK_MODEL_MAP`, `EXAI_PRICE_TABLE`); a value that is
not valid JSON stops the process with one line naming the variable. Blank values
(compose's `${KIMI_API_KEY:-}`) count as unset.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from exai_telemetry import internal_auth
from exai_telemetry.settings import ServiceSettings
from provider_proxy.routing import DEFAULT_MODEL_MAP
from provider_proxy.types import PROVIDER_NAMES, ProviderName
from provider_proxy.usage import DEFAULT_PRICES, ModelPrice

Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]

DEFAULT_FALLBACK_MODELS: dict[str, str] = {
    "kimi-*": "glm-4.5",
    "moonshot-*": "glm-4.5",
    "glm-*": "kimi-k2-0905-preview",
}


class ProxySettings(ServiceSettings):
    port: int = Field(default=8090, ge=1, le=65535, validation_alias="EXAI_PROVIDER_PROXY_PORT")

    # Who may call: `Authorization: Bearer <token>` (exai_telemetry.internal_auth). The
    # `_file` field holds the token read from EXAI_PROVIDER_TOKEN_FILE.
    provider_token_file: SecretStr | None = Field(
        default=None, validation_alias="EXAI_PROVIDER_TOKEN_FILE"
    )
    provider_token: SecretStr | None = Field(
        default=None, validation_alias="EXAI_PROVIDER_TOKEN", validate_default=True
    )

    # Upstreams. No key: the provider's base URL defaults to the llm-simulator.
    kimi_api_key: SecretStr | None = Field(
        default=None, validation_alias="KIMI_API_KEY", validate_default=True
    )
    kimi_base_url: str | None = Field(default=None, validation_alias="KIMI_BASE_URL")
    glm_api_key: SecretStr | None = Field(
        default=None, validation_alias="GLM_API_KEY", validate_default=True
    )
    glm_base_url: str | None = Field(default=None, validation_alias="GLM_BASE_URL")
    simulator_url: str = Field(
        default="http://127.0.0.1:8099", validation_alias="EXAI_SIMULATOR_URL"
    )

    kimi_connect_timeout_s: Seconds = Field(default=5.0, validation_alias="KIMI_CONNECT_TIMEOUT_S")
    kimi_read_timeout_s: Seconds = Field(default=60.0, validation_alias="KIMI_READ_TIMEOUT_S")
    kimi_deadline_s: Seconds = Field(default=120.0, validation_alias="KIMI_DEADLINE_S")
    glm_connect_timeout_s: Seconds = Field(default=5.0, validation_alias="GLM_CONNECT_TIMEOUT_S")
    glm_read_timeout_s: Seconds = Field(default=60.0, validation_alias="GLM_READ_TIMEOUT_S")
    glm_deadline_s: Seconds = Field(default=120.0, validation_alias="GLM_DEADLINE_S")

    # Retries (per logical call) and circuit breakers (per provider).
    retry_max_attempts: int = Field(
        default=3, ge=1, le=10, validation_alias="EXAI_RETRY_MAX_ATTEMPTS"
    )
    retry_base_delay_s: float = Field(
        default=0.5, ge=0, allow_inf_nan=False, validation_alias="EXAI_RETRY_BASE_DELAY_S"
    )
    retry_max_delay_s: float = Field(
        default=8.0, ge=0, allow_inf_nan=False, validation_alias="EXAI_RETRY_MAX_DELAY_S"
    )
    circuit_failure_threshold: int = Field(
        default=5, ge=1, validation_alias="EXAI_CIRCUIT_FAILURE_THRESHOLD"
    )
    circuit_cooldown_s: float = Field(
        default=30.0, ge=0, allow_inf_nan=False, validation_alias="EXAI_CIRCUIT_COOLDOWN_S"
    )

    # Routing and fallback.
    model_provider_map: Annotated[dict[str, ProviderName], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_MODEL_MAP),
        validation_alias="EXAI_MODEL_PROVIDER_MAP",
        min_length=1,
    )
    fallback_provider: ProviderName | None = Field(
        default=None, validation_alias="EXAI_FALLBACK_PROVIDER"
    )
    fallback_map: Annotated[dict[ProviderName, ProviderName], NoDecode] = Field(
        default_factory=dict, validation_alias="EXAI_FALLBACK_MAP"
    )
    fallback_model_map: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_FALLBACK_MODELS),
        validation_alias="EXAI_FALLBACK_MODEL_MAP",
    )

    # USD per 1M tokens by model; merged over the defaults.
    # Published as exai.provider.cost.budget; TokenSpendAboveBudget fires above it.
    spend_budget_usd_per_hour: float = Field(
        default=5.0, gt=0, allow_inf_nan=False, validation_alias="EXAI_SPEND_BUDGET_USD_PER_HOUR"
    )
    price_table: Annotated[dict[str, ModelPrice], NoDecode] = Field(
        default_factory=dict, validation_alias="EXAI_PRICE_TABLE"
    )

    max_request_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, validation_alias="EXAI_MAX_REQUEST_BYTES"
    )
    max_upstream_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, validation_alias="EXAI_MAX_UPSTREAM_BODY_BYTES"
    )
    # A provider's stream: one SSE line (or event), and the whole stream. Past either the
    # stream ends with an error event; nothing is buffered beyond them.
    max_sse_line_bytes: int = Field(
        default=1024 * 1024, ge=1024, validation_alias="EXAI_MAX_SSE_LINE_BYTES"
    )
    max_stream_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, validation_alias="EXAI_MAX_STREAM_BYTES"
    )
    # Connections per provider; a request that finds none free within the connect
    # timeout is refused (503 pool_exhausted) and counted as ours, not the provider's.
    upstream_max_connections: int = Field(
        default=200, ge=1, le=10_000, validation_alias="EXAI_UPSTREAM_MAX_CONNECTIONS"
    )

    @field_validator(
        "kimi_api_key",
        "kimi_base_url",
        "glm_api_key",
        "glm_base_url",
        "fallback_provider",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("provider_token", mode="before")
    @classmethod
    def _blank_token_is_unset(cls, value: Any) -> Any:
        return internal_auth.blank_is_unset(value)

    @field_validator("provider_token_file", mode="before")
    @classmethod
    def _read_token_file(cls, value: Any) -> Any:
        return internal_auth.token_from_file(value)

    @field_validator("provider_token")
    @classmethod
    def _token_required(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        return internal_auth.resolve_token(cls, value, info)

    @field_validator(
        "model_provider_map", "fallback_map", "fallback_model_map", "price_table", mode="before"
    )
    @classmethod
    def _json(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg} at position {exc.pos})") from None

    @field_validator("kimi_base_url", "glm_base_url", "simulator_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        if parts.username or parts.password or parts.query:
            # Credentials go in *_API_KEY, never in a URL that ends up in spans.
            raise ValueError("must not carry credentials or a query string")
        return value.rstrip("/")

    @field_validator("kimi_api_key", "glm_api_key")
    @classmethod
    def _key_in_production(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None and info.data.get("environment") == "production":
            raise ValueError("required when EXAI_ENVIRONMENT=production (no simulator there)")
        return value

    @field_validator("fallback_map")
    @classmethod
    def _fallbacks_differ(
        cls, value: dict[ProviderName, ProviderName]
    ) -> dict[ProviderName, ProviderName]:
        for primary, fallback in value.items():
            if primary == fallback:
                raise ValueError(f"{primary} cannot fall back to itself")
        return value

    def fallbacks(self) -> dict[ProviderName, ProviderName]:
        result: dict[ProviderName, ProviderName] = {}
        if self.fallback_provider is not None:
            for primary in PROVIDER_NAMES:
                if primary != self.fallback_provider:
                    result[primary] = self.fallback_provider
        result.update(self.fallback_map)
        return result

    def prices(self) -> dict[str, ModelPrice]:
        return {**DEFAULT_PRICES, **self.price_table}
