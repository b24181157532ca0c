"""Settings every service shares, and fail-fast loading.

Each service subclasses :class:`ServiceSettings`. :func:`load_settings` turns a
validation error into one line naming the environment variable, then exits.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Literal, NoReturn, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

S = TypeVar("S", bound="ServiceSettings")

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _alias_only(
    infos: list[tuple[str, str, bool]], field: FieldInfo, field_name: str
) -> list[tuple[str, str, bool]]:
    if field.validation_alias is None:
        return infos
    return [info for info in infos if info[0] != field_name]


class _AliasOnlyEnv(EnvSettingsSource):
    """Reads a field only from its declared variable (`EXAI_WS_PORT`), never from its
    Python name: `populate_by_name` would otherwise let a stray `PORT` or `HOST` (honcho,
    Heroku-style platforms and shells set them) reconfigure a service."""

    def _extract_field_info(
        self, field: FieldInfo, field_name: str, model_config: Mapping[str, Any] | None = None
    ) -> list[tuple[str, str, bool]]:
        infos = super()._extract_field_info(field, field_name, model_config)
        return _alias_only(infos, field, field_name)


class _AliasOnlyDotEnv(DotEnvSettingsSource):
    def _extract_field_info(
        self, field: FieldInfo, field_name: str, model_config: Mapping[str, Any] | None = None
    ) -> list[tuple[str, str, bool]]:
        infos = super()._extract_field_info(field, field_name, model_config)
        return _alias_only(infos, field, field_name)


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    otel_service_name: str | None = Field(default=None, validation_alias="OTEL_SERVICE_NAME")
    otel_sdk_disabled: bool = Field(default=False, validation_alias="OTEL_SDK_DISABLED")
    otlp_timeout_s: float = Field(default=5.0, gt=0, le=60, validation_alias="EXAI_OTLP_TIMEOUT_S")
    # How long a finished span may wait in the SDK before export. The collector decides
    # a trace EXAI_TAIL_DECISION_WAIT_AFTER_ROOT (3 s) after its root span arrives; every
    # other span of the trace must have arrived by then, so this stays well below it
    # (the SDK default of 5 s let tail sampling drop retried traces it promised to keep).
    bsp_schedule_delay_ms: int = Field(
        default=500, ge=1, le=2000, validation_alias="OTEL_BSP_SCHEDULE_DELAY"
    )
    # Logs go over OTLP too (to the collector: a file in the no-Docker stack, Loki in
    # compose); stdout JSON stays for `docker compose logs` and the process supervisor.
    otlp_logs: bool = Field(default=True, validation_alias="EXAI_OTLP_LOGS")
    log_level: LogLevel = Field(default="INFO", validation_alias="EXAI_LOG_LEVEL")
    capture_content: bool = Field(default=False, validation_alias="EXAI_CAPTURE_CONTENT")
    environment: str = Field(
        default="development", validation_alias="EXAI_ENVIRONMENT", min_length=1
    )
    host: str = Field(default="127.0.0.1", validation_alias="EXAI_HOST")
    shutdown_grace_s: float = Field(default=10.0, gt=0, validation_alias="EXAI_SHUTDOWN_GRACE_S")
    # After the drain: the last export of spans, log records and metrics, all three in
    # this many seconds at most (a hung collector costs this, then they are dropped).
    # The compose stop_grace_period covers drain + flush (tests/unit/test_config_compose).
    telemetry_flush_s: float = Field(
        default=5.0, gt=0, le=60, validation_alias="EXAI_TELEMETRY_FLUSH_S"
    )
    # Service-to-service tokens (exai_telemetry.internal_auth) are required unless this
    # is off: a developer's explicit opt-out, never a default.
    internal_auth: bool = Field(default=True, validation_alias="EXAI_INTERNAL_AUTH")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Python names stay usable as keyword arguments (tests, factories); the
        # environment and .env are read by declared variable names only.
        return (
            init_settings,
            _AliasOnlyEnv(settings_cls),
            _AliasOnlyDotEnv(settings_cls),
            file_secret_settings,
        )

    def secret_values(self) -> list[str]:
        """Every SecretStr field's value, for the redaction registry."""
        values = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                values.append(value.get_secret_value())
        return values


def _env_name(settings_cls: type[ServiceSettings], loc: tuple[int | str, ...]) -> str:
    if not loc:
        return "settings"
    field = settings_cls.model_fields.get(str(loc[0]))
    alias = getattr(field, "validation_alias", None) if field else None
    return str(alias) if isinstance(alias, str) else str(loc[0]).upper()


def describe_validation_error(settings_cls: type[ServiceSettings], exc: ValidationError) -> str:
    first = exc.errors()[0]
    name = _env_name(settings_cls, tuple(first["loc"]))
    # Never echo the input: it may be a secret.
    return f"invalid setting {name}: {first['msg']}"


def load_settings(settings_cls: type[S]) -> S:
    try:
        return settings_cls()
    except ValidationError as exc:
        fail(describe_validation_error(settings_cls, exc))


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)
