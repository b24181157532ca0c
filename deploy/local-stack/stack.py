"""The no-Docker stack: the same services and config files as compose, as local processes.

One definition of the processes serves two callers:

- `python deploy/local-stack/stack.py run` (what `make run` calls): writes
  `var/Procfile` and runs it under honcho, a real process supervisor (Ctrl-C stops all);
- the end-to-end tests, which import :func:`processes` and start the same commands.

Service-to-service tokens (EXAI_PROVIDER_TOKEN, EXAI_STORAGE_TOKEN,
EXAI_SIMULATOR_ADMIN_TOKEN) are generated per run into var/internal-tokens/ and handed
to each service as `<VARIABLE>_FILE`, unless set in the environment or .env, or
EXAI_INTERNAL_AUTH=off.

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
        # No Loki here: log records go to $EXAI_TELEMETRY_DIR/logs.jsonl for `exai trace`.
        "EXAI_LOGS_EXPORTER": "file/logs",
    }
    env.update(overrides)
    return env


# Prometheus keeps 35 days, as in docker-compose.yml: the SLO dashboard's error budget is
# over 30 days (Prometheus' own default, 15 days, would halve it). The size cap guards the
# disk; once reached, the oldest blocks go first.
PROMETHEUS_RETENTION_TIME = "35d"
PROMETHEUS_RETENTION_SIZE = "20GB"

# Bases of the absolute links in every alert (prometheus.yml external_labels); the same
# defaults as docker-compose.yml and .env.example.
ALERT_LINK_DEFAULTS = {
    "EXAI_RUNBOOK_BASE_URL": "https://github.com/your-org/exai/blob/main/docs/runbooks.md",
    "EXAI_GRAFANA_URL": "http://127.0.0.1:3000",
}


def _setting(name: str, overrides: Mapping[str, str]) -> str:
    """`name` from the overrides, the environment or .env (honcho's order); else ""."""
    if overrides.get(name):
        return overrides[name]
    if os.environ.get(name):
        return os.environ[name]
    dotenv = ROOT / ".env"
    if dotenv.exists():
        for line in dotenv.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == name and value.strip():
                return value.strip().strip("'\"")
    return ""


# Service-to-service tokens (exai_telemetry.internal_auth): variable → file under
# var/internal-tokens/. Which services read each: the callee checks it, the gateway sends
# the first two.
INTERNAL_TOKENS = {
    "EXAI_PROVIDER_TOKEN": "provider.token",
    "EXAI_STORAGE_TOKEN": "storage.token",
    "EXAI_SIMULATOR_ADMIN_TOKEN": "simulator-admin.token",
}
TOKEN_READERS = {
    "llm-simulator": ("EXAI_SIMULATOR_ADMIN_TOKEN",),
    "provider-proxy": ("EXAI_PROVIDER_TOKEN",),
    "storage-adapter": ("EXAI_STORAGE_TOKEN",),
    "ws-gateway": ("EXAI_PROVIDER_TOKEN", "EXAI_STORAGE_TOKEN"),
}


def internal_token_dir(var: Path) -> Path:
    return var / "internal-tokens"


def internal_tokens(var: Path, overrides: Mapping[str, str]) -> dict[str, str]:
    """Per token variable, what the services get: nothing when the caller set the token
    (overrides, environment, .env) or turned internal auth off (EXAI_INTERNAL_AUTH=off);
    else `<VARIABLE>_FILE` naming a fresh random token written for this run (mode 0600,
    never in the Procfile or on the console)."""
    if _setting("EXAI_INTERNAL_AUTH", overrides).lower() in ("off", "false", "0", "no"):
        return {}
    directory = internal_token_dir(var)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    env: dict[str, str] = {}
    for variable, filename in INTERNAL_TOKENS.items():
        if _setting(variable, overrides) or _setting(f"{variable}_FILE", overrides):
            continue
        path = directory / filename
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(secrets.token_urlsafe(32) + "\n")
        env[f"{variable}_FILE"] = str(path)
    return env


def _token_env(service: str, tokens: Mapping[str, str]) -> dict[str, str]:
    """The `_FILE` variables of the tokens `service` reads (least privilege)."""
    wanted = {f"{variable}_FILE" for variable in TOKEN_READERS[service]}
    return {name: path for name, path in tokens.items() if name in wanted}


def prometheus_env(overrides: Mapping[str, str]) -> dict[str, str]:
    """Prometheus' environment: the link bases its external labels expand."""
    return {
        name: _setting(name, overrides) or default for name, default in ALERT_LINK_DEFAULTS.items()
    }


def prometheus_config(var: Path, overrides: Mapping[str, str]) -> Path:
    """The prometheus.yml to run: the repo's, or a view of it with a rules overlay.

    EXAI_PROMETHEUS_RULES_OVERLAY (a folder, relative to the repo) replaces the
    same-named files of deploy/prometheus/rules/ with its own *.yml, the way compose
    mounts targets/compose over targets/local: var/prometheus-config is the repo's layout
    made of symlinks, so Prometheus loads the shipped prometheus.yml and resolves its
    relative paths as usual. Only the end-to-end tests set it (short alert timings from
    deploy/prometheus/rules/e2e/); compose and `make run` ship the production rules.
    """
    overlay = _setting("EXAI_PROMETHEUS_RULES_OVERLAY", overrides)
    if not overlay:
        return ROOT / "prometheus.yml"
    overlay_files = sorted((ROOT / overlay).glob("*.yml"))
    if not overlay_files:
        raise SystemExit(f"EXAI_PROMETHEUS_RULES_OVERLAY={overlay}: no *.yml rule files there")
    view = var / "prometheus-config"
    shutil.rmtree(view, ignore_errors=True)
    shipped = ROOT / "deploy" / "prometheus"
    rules = view / "deploy" / "prometheus" / "rules"
    rules.mkdir(parents=True)
    (view / "prometheus.yml").symlink_to(ROOT / "prometheus.yml")
    for entry in shipped.iterdir():
        if entry.name != "rules":
            (rules.parent / entry.name).symlink_to(entry)
    chosen = {path.name: path for path in sorted((shipped / "rules").glob("*.yml"))}
    chosen.update({path.name: path for path in overlay_files})
    for name, path in chosen.items():
        (rules / name).symlink_to(path)
    return view / "prometheus.yml"


# The receivers' webhook URLs (deploy/alertmanager/render-receivers.sh, .env.example).
ALERT_RECEIVER_VARIABLES = (
    "EXAI_ALERT_WEBHOOK_URL",
    "EXAI_ALERT_PAGE_WEBHOOK_URL",
    "EXAI_ALERT_TICKET_WEBHOOK_URL",
    "EXAI_ALERT_INFO_WEBHOOK_URL",
)


def alertmanager_config(var: Path, overrides: Mapping[str, str]) -> Path:
    """The Alertmanager config to run: the repo's, or a copy with other receivers or
    shorter timings (Alertmanager reads no environment itself).

    EXAI_ALERT_*WEBHOOK_URL set the receivers' URLs, rendered by the same script compose
    runs in the Alertmanager container (deploy/alertmanager/render-receivers.sh).
    EXAI_ALERTMANAGER_GROUP_WAIT / EXAI_ALERTMANAGER_GROUP_INTERVAL replace group_wait /
    group_interval on every route. Only the end-to-end tests set those, so that a
    resolution reaches their webhook in seconds rather than the production 5 minutes.
    """
    shipped = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
    receivers = {
        name: value for name in ALERT_RECEIVER_VARIABLES if (value := _setting(name, overrides))
    }
    if receivers:
        rendered = var / "alertmanager-receivers.yml"
        subprocess.run(
            ["sh", str(shipped.parent / "render-receivers.sh"), str(shipped), str(rendered)],
            env={**os.environ, **receivers},
            check=True,
        )
        shipped = rendered
    timings = {
        key: value
        for key, env in (
            ("group_wait", "EXAI_ALERTMANAGER_GROUP_WAIT"),
            ("group_interval", "EXAI_ALERTMANAGER_GROUP_INTERVAL"),
        )
        if (value := _setting(env, overrides))
    }
    if not timings:
        return shipped
    import yaml  # dev dependency; needed only for this test-only override

    config = yaml.safe_load(shipped.read_text(encoding="utf-8"))
    routes = [config["route"]]
    while routes:
        route = routes.pop()
        route.update(timings)
        routes.extend(route.get("routes", []))
    path = var / "alertmanager-config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    path.chmod(0o600)  # the receivers' URLs may carry credentials
    return path


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
    telemetry_dir = var / "telemetry"
    telemetry_dir.mkdir(parents=True, exist_ok=True)
    tel = telemetry_env({"EXAI_TELEMETRY_DIR": str(telemetry_dir), **overrides})
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
                f"--config.file={prometheus_config(var, overrides)}",
                f"--storage.tsdb.path={var / 'prometheus'}",
                f"--storage.tsdb.retention.time={PROMETHEUS_RETENTION_TIME}",
                f"--storage.tsdb.retention.size={PROMETHEUS_RETENTION_SIZE}",
                "--web.listen-address=127.0.0.1:9090",
                "--web.enable-otlp-receiver",
                "--web.enable-lifecycle",
                "--enable-feature=exemplar-storage",
            ],
            env=prometheus_env(overrides),
            ready_url="http://127.0.0.1:9090/-/ready",
        ),
        Proc(
            "alertmanager",
            [
                tool("alertmanager"),
                f"--config.file={alertmanager_config(var, overrides)}",
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
    tokens = internal_tokens(var, overrides)
    procs += [
        Proc(
            "llm-simulator",
            [py, "-m", "llm_simulator"],
            env={**svc, **_token_env("llm-simulator", tokens)},
            ready_url="http://127.0.0.1:8099/health/ready",
        ),
        Proc(
            "provider-proxy",
            [py, "-m", "provider_proxy"],
            env={**svc, **_token_env("provider-proxy", tokens)},
            ready_url="http://127.0.0.1:8090/health/ready",
        ),
        Proc(
            "storage-adapter",
            [py, "-m", "storage_adapter"],
            env={**svc, **storage_env, **_token_env("storage-adapter", tokens)},
            ready_url="http://127.0.0.1:8091/health/ready",
        ),
        Proc(
            "ws-gateway",
            [py, "-m", "ws_gateway"],
            env={**svc, **_token_env("ws-gateway", tokens)},
            ready_url="http://127.0.0.1:8079/health/ready",
        ),
        # A client of the gateway (EXAI_WS_TOKEN, or its own `canary` client in
        # EXAI_WS_TOKENS): no internal token.
        Proc(
            "canary",
            [py, "-m", "exai_canary"],
            env={**svc, "EXAI_CANARY_GATEWAY_URL": "ws://127.0.0.1:8079"},
            ready_url="http://127.0.0.1:8098/health/ready",
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
  canary          http://127.0.0.1:8098/health (a `status` call to the gateway every 15 s)
  Jaeger API      http://127.0.0.1:16686   (no web UI in this build: use `exai trace <id>`)
  logs            var/telemetry/logs.jsonl (OTLP log records; `exai trace` shows a call's lines)
  Prometheus      http://127.0.0.1:9090    Alertmanager http://127.0.0.1:9093
  alerts          delivered to 127.0.0.1:9095/alerts and printed here (alert-webhook)
  collector       OTLP 127.0.0.1:4317 (gRPC) / 4318 (HTTP), health :13133
{token_line}
  internal tokens var/internal-tokens/*.token (new each run), e.g. the simulator's admin API:
    curl -H "Authorization: Bearer $(cat var/internal-tokens/simulator-admin.token)" \\
         http://127.0.0.1:8099/admin/faults
First request:
  .venv/bin/python -m ws_gateway.cli --prompt "hello" --correlation-id my-first-call
Follow it (every span and log line):
  .venv/bin/exai trace my-first-call --wait 30
"""


HONCHO_KILL_WAIT_S = 30


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
    os.chdir(ROOT)
    # honcho SIGKILLs whatever still runs 5 s after Ctrl-C; the services need their drain
    # (gateway: EXAI_SHUTDOWN_GRACE_S, 10 s) plus the telemetry flush (EXAI_TELEMETRY_FLUSH_S).
    supervise = (
        "import sys, honcho.manager, honcho.command;"
        f"honcho.manager.KILL_WAIT = {HONCHO_KILL_WAIT_S};"
        "sys.exit(honcho.command.main())"
    )
    os.execv(
        sys.executable,
        [sys.executable, "-c", supervise, "start", "-f", str(path), "-d", str(ROOT)],
    )


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
