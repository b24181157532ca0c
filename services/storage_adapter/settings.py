"""storage-adapter settings: one class, every field named by its environment variable.

Durable store selection, first match wins: ``EXAI_DATABASE_URL`` (Postgres or SQLite
URL) → ``SUPABASE_URL`` + ``SUPABASE_KEY`` (Supabase REST) → embedded SQLite at
``EXAI_SQLITE_PATH``. Cache: Redis when ``REDIS_URL`` is set, else in-process memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from exai_telemetry import internal_auth
from exai_telemetry.settings import ServiceSettings

StoreBackend = Literal["postgresql", "sqlite", "supabase"]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+asyncpg://")
_SQLITE_SCHEMES = ("sqlite://", "sqlite+aiosqlite://")


def async_database_url(url: str) -> str:
    """The SQLAlchemy async URL for a user-facing Postgres/SQLite URL."""
    for scheme in _POSTGRES_SCHEMES:
        if url.startswith(scheme):
            return "postgresql+asyncpg://" + url.removeprefix(scheme)
    for scheme in _SQLITE_SCHEMES:
        if url.startswith(scheme):
            return "sqlite+aiosqlite://" + url.removeprefix(scheme)
    raise ValueError("must start with postgresql://, postgres:// or sqlite:///")


class StorageSettings(ServiceSettings):
    port: int = Field(default=8091, ge=0, le=65535, validation_alias="EXAI_STORAGE_ADAPTER_PORT")

    # Who may call: `Authorization: Bearer <token>` (exai_telemetry.internal_auth). The
    # `_file` field holds the token read from EXAI_STORAGE_TOKEN_FILE.
    storage_token_file: SecretStr | None = Field(
        default=None, validation_alias="EXAI_STORAGE_TOKEN_FILE"
    )
    storage_token: SecretStr | None = Field(
        default=None, validation_alias="EXAI_STORAGE_TOKEN", validate_default=True
    )

    database_url: SecretStr | None = Field(default=None, validation_alias="EXAI_DATABASE_URL")
    sqlite_path: Path = Field(default=Path("./var/exai.db"), validation_alias="EXAI_SQLITE_PATH")
    supabase_url: str | None = Field(default=None, validation_alias="SUPABASE_URL")
    supabase_key: SecretStr | None = Field(default=None, validation_alias="SUPABASE_KEY")
    db_timeout_s: float = Field(default=5.0, gt=0, le=300, validation_alias="EXAI_DB_TIMEOUT_S")
    db_pool_size: int = Field(default=10, ge=1, le=200, validation_alias="EXAI_DB_POOL_SIZE")

    redis_url: SecretStr | None = Field(default=None, validation_alias="REDIS_URL")
    redis_timeout_s: float = Field(
        default=0.5, gt=0, le=30, validation_alias="EXAI_REDIS_TIMEOUT_S"
    )
    cache_ttl_s: int = Field(default=3600, ge=1, validation_alias="EXAI_CACHE_TTL_S")
    cache_max_turns: int = Field(
        default=50, ge=1, le=10_000, validation_alias="EXAI_CACHE_MAX_TURNS"
    )
    cache_retry_s: float = Field(default=1.0, ge=0, le=300, validation_alias="EXAI_CACHE_RETRY_S")
    memory_cache_max_conversations: int = Field(
        default=1000, ge=1, validation_alias="EXAI_MEMORY_CACHE_MAX_CONVERSATIONS"
    )
    memory_cache_max_chars: int = Field(
        default=64 * 1024 * 1024, ge=1024, validation_alias="EXAI_MEMORY_CACHE_MAX_CHARS"
    )

    history_default_limit: int = Field(
        default=50, ge=0, validation_alias="EXAI_HISTORY_DEFAULT_LIMIT"
    )
    history_max_limit: int = Field(default=1000, ge=1, validation_alias="EXAI_HISTORY_MAX_LIMIT")
    max_content_chars: int = Field(
        default=256 * 1024, ge=1, validation_alias="EXAI_MAX_CONTENT_CHARS"
    )
    max_metadata_bytes: int = Field(
        default=16 * 1024, ge=2, validation_alias="EXAI_MAX_METADATA_BYTES"
    )

    @field_validator("storage_token", mode="before")
    @classmethod
    def _blank_token_is_unset(cls, value: Any) -> Any:
        return internal_auth.blank_is_unset(value)

    @field_validator("storage_token_file", mode="before")
    @classmethod
    def _read_token_file(cls, value: Any) -> Any:
        return internal_auth.token_from_file(value)

    @field_validator("storage_token")
    @classmethod
    def _token_required(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        return internal_auth.resolve_token(cls, value, info)

    @field_validator("database_url", "supabase_url", "supabase_key", "redis_url", mode="before")
    @classmethod
    def _blank_store_setting_is_unset(cls, value: Any) -> Any:
        # docker-compose.yml passes every optional store setting (`${SUPABASE_URL:-}`).
        return internal_auth.blank_is_unset(value)

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            async_database_url(value.get_secret_value())
        return value

    @field_validator("supabase_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s):// URL")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.supabase_url is None) != (self.supabase_key is None):
            raise ValueError("SUPABASE_URL and SUPABASE_KEY must be set together")
        if self.history_default_limit > self.history_max_limit:
            raise ValueError("EXAI_HISTORY_DEFAULT_LIMIT exceeds EXAI_HISTORY_MAX_LIMIT")
        return self

    @property
    def store_backend(self) -> StoreBackend:
        if self.database_url is not None:
            url = async_database_url(self.database_url.get_secret_value())
            return "postgresql" if url.startswith("postgresql") else "sqlite"
        if self.supabase_url is not None:
            return "supabase"
        return "sqlite"

    def sqlalchemy_url(self) -> str:
        """The async SQLAlchemy URL of the SQL backend (never logged: may hold a password)."""
        if self.database_url is not None:
            return async_database_url(self.database_url.get_secret_value())
        return f"sqlite+aiosqlite:///{self.sqlite_path}"

    @property
    def max_body_bytes(self) -> int:
        """Largest request body: JSON escaping can grow a character to 6 bytes (`\\uXXXX`)."""
        return self.max_content_chars * 6 + self.max_metadata_bytes * 2 + 64 * 1024
