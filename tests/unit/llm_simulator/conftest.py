"""Every simulator deployment has an admin token (exai_telemetry.internal_auth)."""

from __future__ import annotations

import pytest

from tests.support.internal_auth import set_token_env


@pytest.fixture(autouse=True)
def admin_token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    set_token_env(monkeypatch, "EXAI_SIMULATOR_ADMIN_TOKEN")
