"""The Go tests of the local servicegraph connector run with the rest of `make test`.

deploy/local-stack/otelcol/servicegraphconnector is linked into the no-Docker collector in
place of contrib's connector (the module proxy here does not serve that one); its Go
tests pin that it turns spans into the same series as contrib v0.161.0 in the compose
image. Go is found the way .ci/run finds it. The module graph is read-only (the tests
never edit go.mod/go.sum) and the connector requires the same module versions as the
collector build, so after `make tools` the modules are already in the module cache.
Without Go the tests skip locally and fail in CI (CI=true), like the tool-based config
tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.config_tools import REPO_ROOT, in_ci

CONNECTOR = REPO_ROOT / "deploy" / "local-stack" / "otelcol" / "servicegraphconnector"
# Cold compile of the test binary and its dependencies on a busy 2-core machine.
TIMEOUT_S = 900


def _go() -> Path:
    for directory in (Path("/usr/local/go/bin"), Path.home() / "go" / "bin"):
        if (directory / "go").is_file() and os.access(directory / "go", os.X_OK):
            return directory / "go"
    found = shutil.which("go")
    if found:
        return Path(found)
    if in_ci():
        pytest.fail("Go is required to test the servicegraph connector (see .ci/run)")
    pytest.skip("Go not installed; the servicegraph connector's Go tests need it")


def _env() -> dict[str, str]:
    tools_dir = Path(os.environ.get("EXAI_TOOLS_DIR", Path.home() / ".cache" / "exai" / "tools"))
    return {
        **os.environ,
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-mod=readonly -buildvcs=false",
        # The build cache build-tools.sh uses, so dependencies compiled once are reused.
        "GOCACHE": os.environ.get("EXAI_TOOLS_GOCACHE", str(tools_dir / ".go-build")),
        "CGO_ENABLED": "0",
    }


def _run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        cwd=CONNECTOR,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def test_servicegraph_connector_go_tests_pass() -> None:
    result = _run(_go(), "test", "-count=1", "./...")
    assert result.returncode == 0, f"go test failed:\n{result.stdout}\n{result.stderr}"
    assert "ok  \texai.local/otelcol/servicegraphconnector" in result.stdout, result.stdout


def test_servicegraph_connector_is_gofmt_clean() -> None:
    gofmt = _go().with_name("gofmt")
    result = _run(gofmt, "-l", ".")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"not gofmt-formatted:\n{result.stdout}"
