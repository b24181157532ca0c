"""Where the service-to-service tokens come from when nobody sets them: compose's
one-shot job (deploy/docker/internal_tokens.py) and `make run` (deploy/local-stack/
stack.py). Both must produce tokens the services accept, readable only by them."""

from __future__ import annotations

import importlib.util
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from exai_telemetry.internal_auth import check_token
from provider_proxy.settings import ProxySettings
from tests.config_tools import REPO_ROOT
from tests.support.stack import load_stack_module

SCRIPT = REPO_ROOT / "deploy" / "docker" / "internal_tokens.py"
STACK = load_stack_module()
TOKEN_VARIABLES = ("EXAI_PROVIDER_TOKEN", "EXAI_STORAGE_TOKEN", "EXAI_SIMULATOR_ADMIN_TOKEN")


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("exai_internal_tokens", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False
    )


def test_the_compose_job_writes_a_private_token_per_directory_and_keeps_it(
    tmp_path: Path,
) -> None:
    dirs = [tmp_path / "provider", tmp_path / "storage"]
    first = run_script(*map(str, dirs))
    assert first.returncode == 0, first.stderr
    tokens = [(d / "token").read_text().strip() for d in dirs]
    for directory, token in zip(dirs, tokens, strict=True):
        check_token(token)
        assert stat.S_IMODE((directory / "token").stat().st_mode) == 0o400
        assert token not in first.stdout + first.stderr  # never printed
        assert f"internal token generated: {directory / 'token'}" in first.stdout
    assert tokens[0] != tokens[1]
    # A restart keeps them: restarting one service never splits the stack.
    again = run_script(*map(str, dirs))
    assert "internal token kept" in again.stdout
    assert [(d / "token").read_text().strip() for d in dirs] == tokens
    rotated = run_script("--rotate", *map(str, dirs))
    assert rotated.returncode == 0, rotated.stderr
    assert all((d / "token").read_text().strip() not in tokens for d in dirs)


def test_the_compose_job_writes_what_the_services_read_through_the_file_variable(
    tmp_path: Path,
) -> None:
    outcome = load_script().ensure_token(tmp_path, rotate=False, owner=(0, 0))
    assert outcome == "generated"
    settings = ProxySettings.model_validate(
        {"EXAI_PROVIDER_TOKEN": None, "EXAI_PROVIDER_TOKEN_FILE": str(tmp_path / "token")}
    )
    assert settings.provider_token is not None
    assert settings.provider_token.get_secret_value() == (tmp_path / "token").read_text().strip()


def test_the_compose_job_needs_a_directory() -> None:
    result = run_script()
    assert result.returncode == 2 and "usage" in result.stderr


@pytest.fixture
def no_token_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing set by the caller: no environment, no .env."""
    for variable in (*TOKEN_VARIABLES, *(f"{v}_FILE" for v in TOKEN_VARIABLES)):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("EXAI_INTERNAL_AUTH", raising=False)
    monkeypatch.setattr(STACK, "ROOT", tmp_path)


@pytest.mark.usefixtures("no_token_settings")
def test_make_run_generates_fresh_private_tokens_per_run(tmp_path: Path) -> None:
    var = tmp_path / "var"
    env = STACK.internal_tokens(var, {})
    assert set(env) == {f"{v}_FILE" for v in TOKEN_VARIABLES}
    first = {name: Path(path).read_text().strip() for name, path in env.items()}
    for name, path in env.items():
        check_token(first[name])
        assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
        assert Path(path).parent == STACK.internal_token_dir(var)
    assert stat.S_IMODE(STACK.internal_token_dir(var).stat().st_mode) == 0o700
    second = {
        name: Path(path).read_text().strip()
        for name, path in STACK.internal_tokens(var, {}).items()
    }
    assert not set(first.values()) & set(second.values())


@pytest.mark.usefixtures("no_token_settings")
def test_make_run_hands_each_service_only_the_tokens_it_reads(tmp_path: Path) -> None:
    env = STACK.internal_tokens(tmp_path / "var", {})
    assert set(STACK._token_env("provider-proxy", env)) == {"EXAI_PROVIDER_TOKEN_FILE"}
    assert set(STACK._token_env("storage-adapter", env)) == {"EXAI_STORAGE_TOKEN_FILE"}
    assert set(STACK._token_env("llm-simulator", env)) == {"EXAI_SIMULATOR_ADMIN_TOKEN_FILE"}
    assert set(STACK._token_env("ws-gateway", env)) == {
        "EXAI_PROVIDER_TOKEN_FILE",
        "EXAI_STORAGE_TOKEN_FILE",
    }


@pytest.mark.usefixtures("no_token_settings")
def test_make_run_keeps_tokens_the_caller_set_and_honours_the_opt_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    var = tmp_path / "var"
    given = {"EXAI_STORAGE_TOKEN": "storage-token-from-the-caller-0123"}
    assert "EXAI_STORAGE_TOKEN_FILE" not in STACK.internal_tokens(var, given)
    (tmp_path / ".env").write_text("EXAI_PROVIDER_TOKEN=provider-token-from-dotenv-0123\n")
    assert "EXAI_PROVIDER_TOKEN_FILE" not in STACK.internal_tokens(var, {})
    assert STACK.internal_tokens(var, {"EXAI_INTERNAL_AUTH": "off"}) == {}
    monkeypatch.setenv("EXAI_INTERNAL_AUTH", "off")
    assert STACK.internal_tokens(var, {}) == {}
