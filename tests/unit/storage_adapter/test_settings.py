"""Settings: defaults, backend selection, URL conversion, one clear line per bad value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from exai_telemetry.settings import describe_validation_error
from storage_adapter.settings import StorageSettings, async_database_url
from tests.support.internal_auth import STORAGE_TOKEN

UNSET = {"EXAI_DATABASE_URL": None, "SUPABASE_URL": None, "SUPABASE_KEY": None, "REDIS_URL": None}


def settings(**values: Any) -> StorageSettings:
    return StorageSettings(_env_file=None, **{**UNSET, **values})


def test_defaults_are_sqlite_memory_and_port_8091() -> None:
    s = settings()
    assert s.port == 8091
    assert s.store_backend == "sqlite"
    assert s.sqlite_path == Path("./var/exai.db")
    assert s.sqlalchemy_url() == "sqlite+aiosqlite:///var/exai.db"
    assert s.redis_url is None
    assert (s.cache_ttl_s, s.cache_max_turns) == (3600, 50)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@db:5432/exai", "postgresql+asyncpg://u:p@db:5432/exai"),
        ("postgres://u@db/exai", "postgresql+asyncpg://u@db/exai"),
        ("postgresql+asyncpg://u@db/exai", "postgresql+asyncpg://u@db/exai"),
        ("sqlite:////data/exai.db", "sqlite+aiosqlite:////data/exai.db"),
    ],
)
def test_database_urls_become_async_driver_urls(url: str, expected: str) -> None:
    assert async_database_url(url) == expected
    s = settings(EXAI_DATABASE_URL=url)
    assert s.sqlalchemy_url() == expected
    assert s.store_backend == ("sqlite" if url.startswith("sqlite") else "postgresql")


def test_database_url_wins_over_supabase() -> None:
    s = settings(
        EXAI_DATABASE_URL="postgresql://db/exai",
        SUPABASE_URL="https://x.supabase.co",
        SUPABASE_KEY="k" * 20,
    )
    assert s.store_backend == "postgresql"
    assert settings(SUPABASE_URL="https://x.supabase.co", SUPABASE_KEY="k" * 20).store_backend == (
        "supabase"
    )


def test_secrets_are_registered_for_redaction() -> None:
    s = settings(
        EXAI_DATABASE_URL="postgresql://u:hunter2-pass@db/exai",
        REDIS_URL="redis://:redis-pass-1@r:6379/0",
        SUPABASE_URL="https://x.supabase.co",
        SUPABASE_KEY="sb-key-123456",
    )
    assert set(s.secret_values()) == {
        "postgresql://u:hunter2-pass@db/exai",
        "redis://:redis-pass-1@r:6379/0",
        "sb-key-123456",
        STORAGE_TOKEN,
    }
    assert "hunter2" not in repr(s)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"EXAI_DATABASE_URL": "mysql://db/exai"}, "EXAI_DATABASE_URL"),
        ({"SUPABASE_URL": "x.supabase.co", "SUPABASE_KEY": "k"}, "SUPABASE_URL"),
        ({"SUPABASE_URL": "https://x.supabase.co"}, "SUPABASE_KEY"),
        ({"EXAI_CACHE_TTL_S": 0}, "EXAI_CACHE_TTL_S"),
        ({"EXAI_CACHE_MAX_TURNS": "many"}, "EXAI_CACHE_MAX_TURNS"),
        ({"EXAI_STORAGE_ADAPTER_PORT": 70000}, "EXAI_STORAGE_ADAPTER_PORT"),
        (
            {"EXAI_HISTORY_DEFAULT_LIMIT": 50, "EXAI_HISTORY_MAX_LIMIT": 10},
            "EXAI_HISTORY_MAX_LIMIT",
        ),
    ],
)
def test_bad_values_name_the_variable(values: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(**values)
    line = describe_validation_error(StorageSettings, caught.value)
    assert named in line
    assert "\n" not in line


def test_bad_database_url_is_not_echoed() -> None:
    with pytest.raises(ValidationError) as caught:
        settings(EXAI_DATABASE_URL="mysql://user:s3cret-value@db/exai")
    assert "s3cret-value" not in describe_validation_error(StorageSettings, caught.value)


def test_body_limit_covers_the_largest_valid_message() -> None:
    s = settings(EXAI_MAX_CONTENT_CHARS=1000, EXAI_MAX_METADATA_BYTES=100)
    # Every character escaped as \uXXXX plus metadata still fits.
    assert s.max_body_bytes > 1000 * 6 + 100


def test_blank_store_settings_count_as_unset() -> None:
    # What compose passes for the optional ones a user left out of .env: `${SUPABASE_URL:-}`.
    s = settings(
        EXAI_DATABASE_URL="postgresql://exai:pw@postgres:5432/exai",
        SUPABASE_URL="",
        SUPABASE_KEY="",
        REDIS_URL=" ",
    )
    assert s.store_backend == "postgresql"
    assert (s.supabase_url, s.supabase_key, s.redis_url) == (None, None, None)
    assert settings(EXAI_DATABASE_URL="").store_backend == "sqlite"
