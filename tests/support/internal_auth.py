"""Service-to-service tokens for tests (exai_telemetry.internal_auth).

Every test deployment has them, like a real one: services are built with these tokens
and callers send them. Each value is recognisable, so a scan can prove it never reaches
a log line, a span or a metric.
"""

from __future__ import annotations

from collections.abc import Generator

import httpx
import pytest

PROVIDER_TOKEN = "provider-token-for-tests-0123456789"
STORAGE_TOKEN = "storage-token-for-tests-0123456789"
SIMULATOR_ADMIN_TOKEN = "simulator-admin-token-for-tests-0123456789"

# What a deployment sets; the gateway reads the first two as well (it sends them).
TOKEN_ENV = {
    "EXAI_PROVIDER_TOKEN": PROVIDER_TOKEN,
    "EXAI_STORAGE_TOKEN": STORAGE_TOKEN,
    "EXAI_SIMULATOR_ADMIN_TOKEN": SIMULATOR_ADMIN_TOKEN,
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class SimulatorAdminAuth(httpx.Auth):
    """Sends the simulator's admin token on `/admin/*` only; chat requests keep the
    (fake) provider API key the client was given."""

    def __init__(self, token: str = SIMULATOR_ADMIN_TOKEN) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if request.url.path == "/admin" or request.url.path.startswith("/admin/"):
            request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


def set_token_env(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Put the named tokens (all by default) into the environment settings read."""
    for name in names or tuple(TOKEN_ENV):
        monkeypatch.setenv(name, TOKEN_ENV[name])
