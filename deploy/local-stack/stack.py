"""The no-Docker stack: the same services and config files as compose, as local processes.

One definition of the processes serves two callers:

- `python deploy/local-stack/stack.py run` (what `make run` calls): writes
  `var/Procfile` and runs it under honcho, a real process supervisor (Ctrl-C stops all);
- the end-to-end tests, which import :func:`processes` and start the same commands.

Tools (otelcol, prometheus, alertmanager, jaeger) come from
`deploy/local-stack/build-tools.sh`, which builds them into ~/.cache/exai/tools once.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD_TOOLS = ROOT / "deploy" / "local-stack" / "build-tools.sh"
PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


@dataclass(frozen=True)
class Proc:
    name: str
    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    ready_url: str | None = None  # HTTP URL answering 200 once the process is ready
    port: int | None = None  # TCP port to wait for when there is no HTTP readiness URL


def tool(name: str) -> str:
    """Absolute path of a built tool; builds it (printing progress) when missing."""
    out = subprocess.run(
        ["bash", str(BUILD_TOOLS), "path", name], check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]


def _pg_bin(name: str) -> str | None:
    for directory in PG_BIN_DIRS:
        if (directory / name).exists():
            return str(directory / name)
    return None


def _postgres(var: Path) -> tuple[Proc, str] | None:
    """Postgres on 127.0.0.1:5432 with data in var/postgres, when it is installed."""
    initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
    if initdb is None or postgres is None:
        return None
    data = var / "postgres"
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if as_user:
            shutil.chown(data, "postgres", "postgres")
        subprocess.run(
            [*as_user, initdb, "-D", str(data), "-U", "exai", "--auth=trust", "-E", "UTF8"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (data / "exai-created-db").touch()
    argv = [
        *as_user,
        postgres,
        "-D",
        str(data),
        "-p",
        "5432",
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        f"unix_socket_directories={data}",
    ]
    # Connecting to the `postgres` database always works; the storage adapter creates
    # its tables there on start-up.
    return Proc("postgres", argv, port=5432), "postgresql://exai@127.0.0.1:5432/postgres"


def service_env(overrides: Mapping[str, str]) -> dict[str, str]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "EXAI_PROVIDER_URL": "http://127.0.0.1:8090",
        "EXAI_STORAGE_URL": "http://127.0.0.1:8091",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(overrides)
    return env


def telemetry_env(overrides: Mapping[str, str]) -> dict[str, str]:
    """Environment for the collector's `${env:…}` references in otel-collector.yaml."""
    env = {
        "EXAI_OTELCOL_HOST": "127.0.0.1",
        "EXAI_TRACES_ENDPOINT": "127.0.0.1:14317",
        "EXAI_PROMETHEUS_OTLP_ENDPOINT": "http://127.0.0.1:9090/api/v1/otlp",
        "EXAI_ENVIRONMENT": "local",
    }
    env.update(overrides)
    return env


def processes(var: Path, overrides: Mapping[str, str] | None = None) -> list[Proc]:
    """Every process of the local stack, in start order. `overrides`: extra env."""
    overrides = dict(overrides or {})
    var.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    procs: list[Proc] = []
    storage_env: dict[str, str] = {}

    if "REDIS_URL" not in overrides and shutil.which("redis-server"):
        procs.append(
            Proc(
                "redis",
                ["redis-server", "--port", "6379", "--bind", "127.0.0.1", "--save", ""],
                port=6379,
            )
        )
        storage_env["REDIS_URL"] = "redis://127.0.0.1:6379/0"
    no_durable_override = not (
        {"EXAI_DATABASE_URL", "SUPABASE_URL"} & overrides.keys()
        or {"EXAI_DATABASE_URL", "SUPABASE_URL"} & os.environ.keys()
    )
    if no_durable_override and (pg := _postgres(var)) is not None:
        procs.append(pg[0])
        storage_env["EXAI_DATABASE_URL"] = pg[1]

    if overrides.get("EXAI_ALERT_WEBHOOK") != "external":
        # Alertmanager delivers every notification to 127.0.0.1:9095/alerts; this logs
        # them (the end-to-end tests bring their own receiver instead).
        procs.append(
            Proc(
                "alert-webhook",
                [py, str(ROOT / "deploy/docker/alert_webhook.py")],
                ready_url="http://127.0.0.1:9095/health",
            )
        )
    tel = telemetry_env(overrides)
    procs += [
        Proc(
            "jaeger",
            [tool("jaeger"), "--config", str(ROOT / "deploy/local-stack/jaeger.yaml")],
            ready_url="http://127.0.0.1:16686/api/services",
        ),
        Proc(
            "prometheus",
            [
                tool("prometheus"),
                f"--config.file={ROOT / 'prometheus.yml'}",
                f"--storage.tsdb.path={var / 'prometheus'}",
                "--web.listen-address=127.0.0.1:9090",
                "--web.enable-otlp-receiver",
                "--web.enable-lifecycle",
                "--enable-feature=exemplar-storage",
            ],
            ready_url="http://127.0.0.1:9090/-/ready",
        ),
        Proc(
            "alertmanager",
            [
                tool("alertmanager"),
                f"--config.file={ROOT / 'deploy/alertmanager/alertmanager.yml'}",
                f"--storage.path={var / 'alertmanager'}",
                "--web.listen-address=127.0.0.1:9093",
                "--cluster.listen-address=",
            ],
            ready_url="http://127.0.0.1:9093/-/ready",
        ),
        Proc(
            "otelcol",
            [tool("otelcol"), f"--config={ROOT / 'otel-collector.yaml'}"],
            env=tel,
            ready_url="http://127.0.0.1:13133/",
        ),
    ]
    svc = service_env(overrides)
    procs += [
        Proc(
            "llm-simulator",
            [py, "-m", "llm_simulator"],
            env=svc,
            ready_url="http://127.0.0.1:8099/health/ready",
        ),
        Proc(
            "provider-proxy",
            [py, "-m", "provider_proxy"],
            env=svc,
            ready_url="http://127.0.0.1:8090/health/ready",
        ),
        Proc(
            "storage-adapter",
            [py, "-m", "storage_adapter"],
            env={**svc, **storage_env},
            ready_url="http://127.0.0.1:8091/health/ready",
        ),
        Proc(
            "ws-gateway",
            [py, "-m", "ws_gateway"],
            env=svc,
            ready_url="http://127.0.0.1:8079/health/ready",
        ),
    ]
    return procs


def procfile(procs: list[Proc]) -> str:
    lines = []
    for proc in procs:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in proc.env.items() if k not in os.environ)
        command = shlex.join(proc.argv)
        lines.append(f"{proc.name}: exec {'env ' + env + ' ' if env else ''}{command}")
    return "\n".join(lines) + "\n"


def _ensure_ws_token() -> str | None:
    """EXAI_WS_TOKEN from the environment or .env; else a fresh one (returned to print)."""
    if os.environ.get("EXAI_WS_TOKEN"):
        return None
    dotenv = ROOT / ".env"
    if dotenv.exists() and any(
        line.startswith("EXAI_WS_TOKEN=") and line.strip() != "EXAI_WS_TOKEN="
        for line in dotenv.read_text().splitlines()
    ):
        return None
    token = secrets.token_urlsafe(24)
    os.environ["EXAI_WS_TOKEN"] = token
    return token


def banner(generated_token: str | None) -> str:
    token_line = (
        f"  EXAI_WS_TOKEN (generated for this run): {generated_token}"
        if generated_token
        else "  EXAI_WS_TOKEN: from your environment / .env"
    )
    return f"""
EXAI local stack (no Docker) — Ctrl-C stops everything
  ws-gateway      ws://127.0.0.1:8079      (health: http://127.0.0.1:8079/health)
  provider-proxy  http://127.0.0.1:8090/v1 (OpenAI-compatible)
  storage-adapter http://127.0.0.1:8091
  llm-simulator   http://127.0.0.1:8099    (stands in for Kimi/GLM without API keys)
  Jaeger UI       http://127.0.0.1:16686   (search tag exai.correlation_id=<id>)
  Prometheus      http://127.0.0.1:9090    Alertmanager http://127.0.0.1:9093
  alerts          delivered to 127.0.0.1:9095/alerts and printed here (alert-webhook)
  collector       OTLP 127.0.0.1:4317 (gRPC) / 4318 (HTTP), health :13133
{token_line}
First request:
  .venv/bin/python -m ws_gateway.client --prompt "hello" --correlation-id my-first-call
"""


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "run"
    var = ROOT / "var"
    if command == "procfile":
        print(procfile(processes(var)), end="")
        return 0
    if command != "run":
        print(f"usage: {argv[0]} [run|procfile]", file=sys.stderr)
        return 2
    token = _ensure_ws_token()
    print("[stack] building/locating telemetry tools …", flush=True)
    path = var / "Procfile"
    path.write_text(procfile(processes(var)))
    print(banner(token), flush=True)
    honcho = Path(sys.executable).with_name("honcho")
    os.chdir(ROOT)
    os.execv(str(honcho), [str(honcho), "start", "-f", str(path), "-d", str(ROOT)])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
