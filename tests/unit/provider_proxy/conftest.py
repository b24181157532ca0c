"""Settings tests read the environment: start each from a clean one."""

from __future__ import annotations

import os

import pytest

from provider_proxy.settings import ProxySettings
from tests.support.internal_auth import set_token_env


@pytest.fixture(autouse=True)
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    names = {
        str(field.validation_alias)
        for field in ProxySettings.model_fields.values()
        if field.validation_alias
    }
    for name in names & set(os.environ):
        monkeypatch.delenv(name)
    # ... except the internal token every deployment has (exai_telemetry.internal_auth).
    set_token_env(monkeypatch, "EXAI_PROVIDER_TOKEN")
    monkeypatch.chdir(os.path.dirname(__file__))  # no stray .env file
