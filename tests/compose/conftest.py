"""The compose stack, started once for the compose tests: `docker compose up --wait` on
the repo's docker-compose.yml, as an operator runs it, with two layers over it:

- tests/compose/test-stack.yml publishes on 127.0.0.1 (free ports) what the checks read
  and loads the end-to-end alert timings; it changes nothing else;
- tests/compose/no-agpl.yml, where the images are built here (EXAI_COMPOSE_IMAGES=local,
  the default: this machine has no registry), replaces Tempo by Jaeger and Loki by a
  log-record sink at the same addresses, and leaves Grafana out. With
  EXAI_COMPOSE_IMAGES=upstream (a machine that can pull) the upstream images run, Grafana,
  Tempo and Loki included, and the Grafana checks run too.

The engine is started if none answers (deploy/docker/engine.sh) and the images built
(deploy/docker/images.sh, layer-cached). Everything the fixture starts it stops, also
when a test fails: `down --volumes`, then the engine if it started it.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.compose import (
    ENGINE,
    IMAGES,
    MODE,
    ROOT,
    Compose,
    ComposeStack,
    image_variables,
    run_script,
)

pytestmark = pytest.mark.compose

PROJECT = "exai-compose-test"
KIMI_KEY = "sk-compose-kimi-" + secrets.token_hex(12)
GLM_KEY = "compose-glm-" + secrets.token_hex(12)


def _environment(log_dir: Path) -> dict[str, str]:
    env = {
        "EXAI_WS_TOKEN": "ws-compose-" + secrets.token_hex(16),
        # Letters and digits only: it is embedded in EXAI_DATABASE_URL.
        "POSTGRES_PASSWORD": "pg" + secrets.token_hex(16),
        "GF_SECURITY_ADMIN_PASSWORD": "gf" + secrets.token_hex(16),
        # Recognisable fake keys (the secrets scan looks for them); the calls go to the
        # simulator.
        "KIMI_API_KEY": KIMI_KEY,
        "KIMI_BASE_URL": "http://llm-simulator:8099/v1",
        "GLM_API_KEY": GLM_KEY,
        "GLM_BASE_URL": "http://llm-simulator:8099/api/paas/v4",
        "EXAI_ENVIRONMENT": "compose-test",
        "EXAI_TRACE_SAMPLE_PERCENT": "10",
        "EXAI_CIRCUIT_COOLDOWN_S": "2",
        "EXAI_RUNBOOK_BASE_URL": "https://runbooks.compose.example/exai/runbooks.md",
        "EXAI_GRAFANA_URL": "http://grafana.compose.example:3000",
        "EXAI_COMPOSE_LOG_DIR": str(log_dir),
    }
    if MODE == "local":
        env.update(image_variables())
    return env


@pytest.fixture(scope="package")
def compose_stack() -> Iterator[ComposeStack]:
    if MODE not in ("local", "upstream"):
        raise pytest.UsageError(f"EXAI_COMPOSE_IMAGES must be local or upstream, not {MODE!r}")
    engine = run_script(ENGINE, "start", timeout_s=1800).split()
    if MODE == "local":
        run_script(IMAGES, "build", timeout_s=3600)
    # Written by the log sink's user (10001); read by the test and the gateway.
    log_dir = Path(tempfile.mkdtemp(prefix="exai-compose-logs-"))
    log_dir.chmod(0o777)
    # An empty env file: a developer's own .env (real keys) never reaches the test stack.
    env_file = log_dir / "empty.env"
    env_file.write_text("")
    files = [ROOT / "docker-compose.yml", ROOT / "tests/compose/test-stack.yml"]
    if MODE == "local":
        files.append(ROOT / "tests/compose/no-agpl.yml")
    compose = Compose(PROJECT, files, _environment(log_dir), env_file)
    try:
        compose.down(volumes=True)  # what a previous, interrupted run may have left
        compose.up(*(["--pull", "never", "--no-build"] if MODE == "local" else ["--build"]))
        yield ComposeStack(compose, MODE == "upstream", log_dir, (KIMI_KEY, GLM_KEY))
    finally:
        try:
            (Path(tempfile.gettempdir()) / f"{PROJECT}.log").write_text(
                compose.run("logs", "--no-color", "--timestamps", check=False)
            )
            compose.down(volumes=True)
        finally:
            shutil.rmtree(log_dir, ignore_errors=True)
            if "started" in engine:
                run_script(ENGINE, "stop", timeout_s=120)
