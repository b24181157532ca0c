"""Every gateway deployment has the tokens it sends to provider-proxy and
storage-adapter (exai_telemetry.internal_auth)."""

from __future__ import annotations

import pytest

from tests.support.internal_auth import set_token_env


@pytest.fixture(autouse=True)
def internal_token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    set_token_env(monkeypatch, "EXAI_PROVIDER_TOKEN", "EXAI_STORAGE_TOKEN")
