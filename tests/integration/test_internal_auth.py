"""Service-to-service authentication (issue 8, point 11): provider-proxy, storage-adapter
and the simulator's admin API answer only callers with their own internal token.

Real services on loopback; real `python -m …` processes for the start-up checks.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from exai_telemetry import internal_auth
from llm_simulator.app import create_app as create_simulator
from llm_simulator.settings import SimulatorSettings
from provider_proxy.app import create_app as create_proxy
from provider_proxy.settings import ProxySettings
from storage_adapter.app import create_app as create_storage
from storage_adapter.settings import StorageSettings
from tests.support.asgi import serve_app
from tests.support.internal_auth import (
    PROVIDER_TOKEN,
    SIMULATOR_ADMIN_TOKEN,
    STORAGE_TOKEN,
    TOKEN_ENV,
    bearer,
)
from tests.support.telemetry import CapturedTelemetry

pytestmark = pytest.mark.integration

WRONG_TOKEN = "wrong-token-that-looks-plausible-0123456789"
HEALTH = ("/health/live", "/health/ready", "/health")


@dataclass(frozen=True)
class Callee:
    name: str
    variable: str
    token: str
    # A request that needs the token, and the status it gets with it.
    method: str
    path: str
    body: dict[str, Any] | None
    ok_status: int


CALLEES = {
    "provider-proxy": Callee(
        "provider-proxy",
        "EXAI_PROVIDER_TOKEN",
        PROVIDER_TOKEN,
        "POST",
        "/v1/chat/completions",
        {"model": "kimi-k2-turbo-preview", "messages": [{"role": "user", "content": "hi"}]},
        200,
    ),
    "storage-adapter": Callee(
        "storage-adapter",
        "EXAI_STORAGE_TOKEN",
        STORAGE_TOKEN,
        # Past the token check the API answers: here, that there is no such conversation.
        "GET",
        "/v1/conversations/auth-test-1",
        None,
        404,
    ),
    "llm-simulator": Callee(
        "llm-simulator",
        "EXAI_SIMULATOR_ADMIN_TOKEN",
        SIMULATOR_ADMIN_TOKEN,
        "POST",
        "/admin/faults",
        {"mode": "none"},
        200,
    ),
}


@dataclass
class Services:
    urls: dict[str, str]
    captured: CapturedTelemetry


@contextlib.asynccontextmanager
async def running_services(captured: CapturedTelemetry, tmp_path: Path) -> AsyncIterator[Services]:
    """The three callees, each with its token; the proxy's upstream is the simulator."""
    async with contextlib.AsyncExitStack() as stack:
        sim_settings = SimulatorSettings(simulator_admin_token=SIMULATOR_ADMIN_TOKEN)
        sim_telemetry, _ = captured.build("llm-simulator", sim_settings)
        sim_url = await stack.enter_async_context(
            serve_app(create_simulator(sim_settings, sim_telemetry))
        )
        proxy_settings = ProxySettings(
            provider_token=SecretStr(PROVIDER_TOKEN), simulator_url=sim_url
        )
        proxy_telemetry, _ = captured.build("provider-proxy", proxy_settings)
        proxy_url = await stack.enter_async_context(
            serve_app(create_proxy(proxy_settings, proxy_telemetry))
        )
        storage_settings = StorageSettings.model_validate(
            {
                "EXAI_SQLITE_PATH": str(tmp_path / "exai.db"),
                "EXAI_DATABASE_URL": None,
                "REDIS_URL": None,
                "EXAI_STORAGE_TOKEN": STORAGE_TOKEN,
            }
        )
        storage_telemetry, _ = captured.build("storage-adapter", storage_settings)
        storage_url = await stack.enter_async_context(
            serve_app(create_storage(storage_settings, storage_telemetry))
        )
        yield Services(
            {"llm-simulator": sim_url, "provider-proxy": proxy_url, "storage-adapter": storage_url},
            captured,
        )


@pytest.fixture
async def services(captured: CapturedTelemetry, tmp_path: Path) -> AsyncIterator[Services]:
    async with running_services(captured, tmp_path) as running:
        yield running


async def call(
    services: Services, callee: Callee, headers: dict[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=services.urls[callee.name], timeout=20) as client:
        return await client.request(callee.method, callee.path, json=callee.body, headers=headers)


def error_of(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


@pytest.mark.parametrize("name", sorted(CALLEES))
async def test_no_token_is_a_401_naming_the_variable(services: Services, name: str) -> None:
    callee = CALLEES[name]
    response = await call(services, callee)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    error = error_of(response)
    assert error["code"] == "missing_token"
    assert callee.variable in error["message"]


@pytest.mark.parametrize("name", sorted(CALLEES))
@pytest.mark.parametrize(
    "authorization",
    [
        f"Bearer {WRONG_TOKEN}",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        # Another service's token is just as wrong.
        f"Bearer {STORAGE_TOKEN}x",
        # The right token under another scheme, or with a byte more, is not accepted.
        "Token {token}",
        "Bearer {token}0",
        "Bearer \xe9{token}",  # not ASCII: compared as the bytes sent
    ],
)
async def test_a_wrong_token_is_a_401(services: Services, name: str, authorization: str) -> None:
    callee = CALLEES[name]
    value = authorization.format(token=callee.token).encode("latin-1")
    async with httpx.AsyncClient(base_url=services.urls[callee.name], timeout=20) as client:
        response = await client.request(
            callee.method, callee.path, json=callee.body, headers={"Authorization": value}
        )
    assert response.status_code == 401
    assert error_of(response)["code"] in ("invalid_token", "missing_token")


@pytest.mark.parametrize("name", sorted(CALLEES))
async def test_the_right_token_is_served(services: Services, name: str) -> None:
    callee = CALLEES[name]
    response = await call(services, callee, bearer(callee.token))
    assert response.status_code == callee.ok_status, response.text


async def test_the_scheme_name_is_case_insensitive(services: Services) -> None:
    # RFC 7235: `bearer` is `Bearer`.
    async with httpx.AsyncClient(base_url=services.urls["provider-proxy"]) as client:
        response = await client.get(
            "/v1/models", headers={"Authorization": f"bEaReR  {PROVIDER_TOKEN}"}
        )
    assert response.status_code == 200


@pytest.mark.parametrize("name", sorted(CALLEES))
@pytest.mark.parametrize("path", HEALTH)
async def test_health_endpoints_stay_open_for_probes(
    services: Services, name: str, path: str
) -> None:
    async with httpx.AsyncClient(base_url=services.urls[name], timeout=10) as client:
        response = await client.get(path)
    assert response.status_code == 200, response.text


async def test_each_token_opens_only_its_own_service(services: Services) -> None:
    for name, callee in CALLEES.items():
        for other in CALLEES.values():
            if other.token != callee.token:
                response = await call(services, callee, bearer(other.token))
                assert response.status_code == 401, (name, other.name)


async def test_the_proxys_401_is_an_openai_error(services: Services) -> None:
    """OpenAI SDKs pointed at the proxy read `error.message` and `error.type`."""
    error = error_of(await call(services, CALLEES["provider-proxy"]))
    assert error["type"] == "authentication_error"
    assert set(error) == {"message", "type", "code", "param"}


async def test_everything_but_health_is_protected(services: Services) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for name, path in (
            ("provider-proxy", "/v1/models"),
            ("provider-proxy", "/openapi.json"),
            ("provider-proxy", "/no-such-path"),
            ("storage-adapter", "/v1/conversations/auth-test-1"),
            ("storage-adapter", "/health/live/extra"),
            ("llm-simulator", "/admin/stats"),
            ("llm-simulator", "/admin"),
        ):
            response = await client.get(f"{services.urls[name]}{path}")
            assert response.status_code == 401, (name, path)


async def test_the_simulators_provider_apis_need_no_admin_token(services: Services) -> None:
    # Only /admin/* is the operator's; the Kimi/GLM shapes take any API key as before.
    async with httpx.AsyncClient(base_url=services.urls["llm-simulator"], timeout=10) as client:
        response = await client.post(
            "/v1/chat/completions",
            json=CALLEES["provider-proxy"].body,
            headers=bearer("sk-any-fake-provider-key-123"),
        )
    assert response.status_code == 200


async def test_tokens_are_compared_in_constant_time(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(internal_auth.hmac, "compare_digest", spy)
    for callee in CALLEES.values():
        seen.clear()
        await call(services, callee, bearer(WRONG_TOKEN))
        await call(services, callee, bearer(callee.token))
        assert seen == [
            (WRONG_TOKEN.encode(), callee.token.encode()),
            (callee.token.encode(), callee.token.encode()),
        ], callee.name


async def test_no_token_reaches_a_log_line_or_a_span(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for callee in CALLEES.values():
        await call(services, callee)
        await call(services, callee, bearer(WRONG_TOKEN))
        await call(services, callee, bearer(callee.token))
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "refused POST /v1/chat/completions: missing_token" in text
    assert "invalid_token" in text
    spans = services.captured.spans()
    assert any((s.attributes or {}).get("http.response.status_code") == 401 for s in spans), (
        "a refused request is still traced"
    )
    dump = text + "\n".join(
        repr(dict(s.attributes or {})) + repr(s.status) + repr([e.attributes for e in s.events])
        for s in spans
    )
    for secret in (*TOKEN_ENV.values(), WRONG_TOKEN):
        assert secret not in dump


# --- start-up --------------------------------------------------------------------------

MODULES = {
    "provider-proxy": ("provider_proxy", ["EXAI_PROVIDER_TOKEN"]),
    "storage-adapter": ("storage_adapter", ["EXAI_STORAGE_TOKEN"]),
    "llm-simulator": ("llm_simulator", ["EXAI_SIMULATOR_ADMIN_TOKEN"]),
    "ws-gateway": ("ws_gateway", ["EXAI_PROVIDER_TOKEN", "EXAI_STORAGE_TOKEN"]),
}
WS_TOKEN = "ws-token-for-auth-tests-0123456789"


def start(module: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m module` with only `env` set among the EXAI_/OTEL_ variables; the
    process is expected to stop at once (a refused start-up)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("EXAI_", "OTEL_"))}
    return subprocess.run(
        [sys.executable, "-m", module],
        env={**base, "OTEL_SDK_DISABLED": "true", **env},
        cwd=cwd,  # no stray .env
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def tokens_but(module_name: str, missing: str) -> dict[str, str]:
    env = {name: TOKEN_ENV[name] for name in MODULES[module_name][1] if name != missing}
    if module_name == "ws-gateway":
        env["EXAI_WS_TOKEN"] = WS_TOKEN
    return env


@pytest.mark.parametrize(
    ("name", "variable"),
    [(name, variable) for name, (_, variables) in MODULES.items() for variable in variables],
)
def test_a_service_without_its_token_refuses_to_start_with_one_line(
    tmp_path: Path, name: str, variable: str
) -> None:
    result = start(MODULES[name][0], tmp_path, **tokens_but(name, variable))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: invalid setting {variable}: ")
    assert "EXAI_INTERNAL_AUTH=off" in lines[0]


@pytest.mark.parametrize(
    ("value", "problem"),
    [("short-token", "at least 16 characters"), ("has spaces in the token value", "letters")],
)
def test_a_weak_or_malformed_token_refuses_start_up_without_echoing_it(
    tmp_path: Path, value: str, problem: str
) -> None:
    result = start("provider_proxy", tmp_path, EXAI_PROVIDER_TOKEN=value)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: invalid setting EXAI_PROVIDER_TOKEN: ") and problem in line
    assert value not in result.stderr


def test_an_unreadable_token_file_names_the_file_variable(tmp_path: Path) -> None:
    missing = tmp_path / "nope.token"
    result = start("storage_adapter", tmp_path, EXAI_STORAGE_TOKEN_FILE=str(missing))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: invalid setting EXAI_STORAGE_TOKEN_FILE: ")
    assert "No such file" in line


def test_a_token_and_a_token_file_together_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "provider.token"
    path.write_text(PROVIDER_TOKEN + "\n")
    result = start(
        "provider_proxy",
        tmp_path,
        EXAI_PROVIDER_TOKEN_FILE=str(path),
        EXAI_PROVIDER_TOKEN=PROVIDER_TOKEN,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "set EXAI_PROVIDER_TOKEN or EXAI_PROVIDER_TOKEN_FILE, not both" in line


def test_a_token_file_is_read_stripped(tmp_path: Path) -> None:
    path = tmp_path / "provider.token"
    path.write_text(f"  {PROVIDER_TOKEN}\n")
    settings = ProxySettings.model_validate({"EXAI_PROVIDER_TOKEN_FILE": str(path)})
    assert settings.provider_token is not None
    assert settings.provider_token.get_secret_value() == PROVIDER_TOKEN
    assert PROVIDER_TOKEN in settings.secret_values()  # scrubbed from logs and spans


def test_blank_tokens_count_as_unset() -> None:
    # compose's ${VAR:-} gives empty strings: still "required", not "too short".
    with pytest.raises(ValueError, match="required"):
        ProxySettings.model_validate({"EXAI_PROVIDER_TOKEN": " ", "EXAI_PROVIDER_TOKEN_FILE": ""})


async def test_opting_out_starts_an_open_service_and_says_so(
    captured: CapturedTelemetry, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ProxySettings.model_validate({"EXAI_INTERNAL_AUTH": "off"})
    assert settings.provider_token is None
    telemetry, _ = captured.build("provider-proxy", settings)
    with caplog.at_level(logging.WARNING, logger="exai_telemetry.internal_auth"):
        app = create_proxy(settings, telemetry)
    assert "service-to-service authentication is off (EXAI_INTERNAL_AUTH=off)" in caplog.text
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/v1/models")).status_code == 200


def test_the_protected_paths_of_each_service() -> None:
    protect_admin: Callable[[str], bool] = internal_auth.under("/admin")
    assert protect_admin("/admin") and protect_admin("/admin/faults")
    assert not protect_admin("/administrator") and not protect_admin("/v1/chat/completions")
    assert not internal_auth.not_health("/health/ready")
    assert internal_auth.not_health("/health/ready/") and internal_auth.not_health("/v1/models")
