"""Every storage-adapter deployment has its internal token (exai_telemetry.internal_auth)."""

from __future__ import annotations

import pytest

from tests.support.internal_auth import set_token_env


@pytest.fixture(autouse=True)
def storage_token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    set_token_env(monkeypatch, "EXAI_STORAGE_TOKEN")
