"""Static checks of docker-compose.yml, the service Dockerfile and .env.example.

No Docker engine is needed: the file is interpolated the way compose does it, then
validated against the Compose Specification JSON schema (tests/fixtures/compose-spec.json,
copied from compose-go v2.16.2, the loader `docker compose` uses). Then the real
`docker compose config` renders it: the Compose CLI plugin is built from Go modules by
deploy/local-stack/build-tools.sh (pinned in tools/versions.env, see tests/config_tools.py:
skipped when not built yet, built or failed when CI=true) and installed for the `docker`
client through a temporary DOCKER_CONFIG/cli-plugins/ (config needs no engine). Where
there is no `docker` client the plugin binary runs standalone (`docker-compose config`,
the same code).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml

from exai_telemetry.settings import ServiceSettings
from llm_simulator.settings import SimulatorSettings
from provider_proxy.settings import ProxySettings
from storage_adapter.settings import StorageSettings
from tests.config_tools import REPO_ROOT, load_yaml, tool, versions
from tests.support.compose import image_variables
from ws_gateway.server import CLOSE_TIMEOUT_S
from ws_gateway.settings import GatewaySettings

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
RAW = load_yaml("docker-compose.yml")
SERVICES: dict[str, dict[str, Any]] = RAW["services"]
DOCKERFILE = REPO_ROOT / "deploy" / "docker" / "service.Dockerfile"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
README = REPO_ROOT / "README.md"

# DESIGN §2: the port each service listens on.
DESIGN_PORTS = {
    "ws-gateway": 8079,
    "provider-proxy": 8090,
    "storage-adapter": 8091,
    "llm-simulator": 8099,
    "prometheus": 9090,
    "alertmanager": 9093,
    "tempo": 3200,
    "grafana": 3000,
    "loki": 3100,
}
OUR_SERVICES = {
    "ws-gateway": ("ws_gateway", "EXAI_WS_PORT"),
    "provider-proxy": ("provider_proxy", "EXAI_PROVIDER_PROXY_PORT"),
    "storage-adapter": ("storage_adapter", "EXAI_STORAGE_ADAPTER_PORT"),
    "llm-simulator": ("llm_simulator", "EXAI_LLM_SIMULATOR_PORT"),
}
# Every service of the stack, as `docker compose config` lists them.
EXPECTED_SERVICES = {
    "ws-gateway",
    "provider-proxy",
    "storage-adapter",
    "llm-simulator",
    "redis",
    "postgres",
    "otel-collector",
    "prometheus",
    "alertmanager",
    "alert-webhook",
    "tempo",
    "loki",
    "grafana",
    "internal-tokens",
    "canary",
}
# Run once and exit; the others wait for `service_completed_successfully`.
ONE_SHOT = {"internal-tokens"}
REQUIRED_SECRETS = {"EXAI_WS_TOKEN", "POSTGRES_PASSWORD", "GF_SECURITY_ADMIN_PASSWORD"}
SAMPLE_ENV = {name: f"test-{name.lower()}" for name in REQUIRED_SECRETS}
SECRET_NAME = re.compile(r"(KEY|TOKEN|PASSWORD|SECRET)$")


# ------------------------------------------------------------------ interpolation

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])((?:[^{}]|\{[^{}]*\})*))?\}")


class MissingVariable(Exception):
    pass


def interpolate_text(text: str, env: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, $$."""

    def replace(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3) or ""
        value = env.get(name)
        unset = value is None or (operator is not None and operator.startswith(":") and not value)
        if operator in (":-", "-") and unset:
            return interpolate_text(argument, env)
        if operator in (":?", "?") and unset:
            raise MissingVariable(f"{name}: {argument}")
        return value or ""

    placeholder = "\0"
    return _VARIABLE.sub(replace, text.replace("$$", placeholder)).replace(placeholder, "$")


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate_text(node, env)
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    return node


def variables_used() -> set[str]:
    lines = COMPOSE_FILE.read_text(encoding="utf-8").splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))


def test_interpolation_helper_follows_compose_rules() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert (
        interpolate_text("${SET}-${UNSET:-d}-${EMPTY:-d}-${EMPTY-d}-$${SET}", env)
        == "v-d-d--${SET}"
    )
    assert interpolate_text("${UNSET:-a${SET}b}", env) == "avb"
    with pytest.raises(MissingVariable):
        interpolate_text("${EMPTY:?needed}", env)


# ------------------------------------------------------------------ schema and references


def test_compose_file_matches_the_compose_specification() -> None:
    schema = json.loads(
        (REPO_ROOT / "tests/fixtures/compose-spec.json").read_text(encoding="utf-8")
    )
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema)
    resolved = interpolate(RAW, SAMPLE_ENV)
    errors = sorted(validator.iter_errors(resolved), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


@pytest.mark.parametrize("secret", sorted(REQUIRED_SECRETS))
def test_required_secrets_fail_fast_when_unset(secret: str) -> None:
    env = {k: v for k, v in SAMPLE_ENV.items() if k != secret}
    with pytest.raises(MissingVariable, match=secret):
        interpolate(RAW, env)


# ------------------------------------------------------------------ docker compose config


class Compose:
    """`docker compose` through the pinned plugin, isolated from the user's setup.

    A minimal environment (no COMPOSE_* or secret from the caller), HOME and DOCKER_CONFIG
    in a temp dir, and `--env-file` pointing at a temp .env-like file, so a developer's own
    .env beside docker-compose.yml is never read.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        plugin = tool("docker-compose").resolve()
        docker = shutil.which("docker")
        self.env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(base),
            "DOCKER_CONFIG": str(base),
        }
        if docker:
            plugins = base / "cli-plugins"
            plugins.mkdir()
            (plugins / "docker-compose").symlink_to(plugin)
            self.argv = [docker, "compose"]
        else:
            self.argv = [str(plugin)]
        self._files = 0

    def run(
        self,
        *args: str,
        env_file: Mapping[str, str] | None = None,
        layers: tuple[Path, ...] = (),
    ) -> subprocess.CompletedProcess[str]:
        self._files += 1
        dotenv = self.base / f"env-{self._files}"
        dotenv.write_text(
            "".join(f"{key}={value}\n" for key, value in (env_file or {}).items()), encoding="utf-8"
        )
        return subprocess.run(
            [
                *self.argv,
                "-f",
                str(COMPOSE_FILE),
                *(arg for layer in layers for arg in ("-f", str(layer))),
                "--env-file",
                str(dotenv),
                *args,
            ],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Compose:
    return Compose(tmp_path_factory.mktemp("docker-config"))


@pytest.fixture(scope="module")
def rendered(compose: Compose) -> dict[str, Any]:
    """`docker compose config --format json` with placeholder secrets."""
    result = compose.run("config", "--format", "json", env_file=SAMPLE_ENV)
    assert result.returncode == 0, result.stderr
    # No warning either (obsolete attributes, unknown keys, …).
    assert result.stderr.strip() == "", result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def test_docker_compose_runs_the_pinned_plugin(compose: Compose) -> None:
    result = compose.run("version", "--short")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == versions()["COMPOSE_VERSION"]


def test_docker_compose_config_lists_every_service(rendered: dict[str, Any]) -> None:
    assert rendered["name"] == "exai"
    assert set(rendered["services"]) == EXPECTED_SERVICES
    assert set(rendered["services"]) == set(SERVICES)
    assert {name: v["name"] for name, v in rendered["volumes"].items()} == {
        name: f"exai_{name}" for name in RAW["volumes"]
    }


def test_docker_compose_config_publishes_only_grafana_and_the_gateway_on_loopback(
    rendered: dict[str, Any],
) -> None:
    published = {
        name: [
            (p.get("host_ip"), str(p.get("published")), p["target"], p.get("protocol"))
            for p in service["ports"]
        ]
        for name, service in rendered["services"].items()
        if service.get("ports")
    }
    assert published == {
        "ws-gateway": [("127.0.0.1", "8079", 8079, "tcp")],
        "grafana": [("127.0.0.1", "3000", 3000, "tcp")],
    }
    for name, service in rendered["services"].items():
        assert "expose" not in service, name
        assert service.get("network_mode") in (None, "service:alertmanager", "none"), name


def test_the_compose_test_layers_change_only_what_they_say(compose: Compose) -> None:
    """tests/compose runs the shipped file under two layers: published test ports and the
    e2e alert timings (test-stack.yml), and Jaeger + a log sink in place of Tempo and
    Loki, without Grafana (no-agpl.yml), on the images deploy/docker/images.sh builds."""
    image_env = image_variables()
    env = {**SAMPLE_ENV, **image_env, "EXAI_COMPOSE_LOG_DIR": "/tmp/exai-compose-logs"}
    layers = (REPO_ROOT / "tests/compose/test-stack.yml", REPO_ROOT / "tests/compose/no-agpl.yml")
    result = compose.run("config", "--format", "json", env_file=env, layers=layers)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert set(services) == EXPECTED_SERVICES - {"grafana"}
    assert services["tempo"]["image"] == image_env["EXAI_JAEGER_IMAGE"]
    assert services["loki"]["image"] == image_env["EXAI_COLLECTOR_IMAGE"]
    for name, service in services.items():
        if "build" not in service:
            assert service["image"] in image_env.values(), (name, service["image"])
        for port in service.get("ports", []):
            # Loopback, on a port the engine picks: never clashes with `make run`.
            assert (port.get("host_ip"), port.get("published", "")) == ("127.0.0.1", ""), name
    rules = {v["target"]: v["source"] for v in services["prometheus"]["volumes"]}
    assert rules["/etc/prometheus/deploy/prometheus/rules"].endswith("deploy/prometheus/rules/e2e")
    # The collector, its config and every other service are the shipped ones.
    shipped = json.loads(
        compose.run("config", "--format", "json", env_file={**SAMPLE_ENV, **image_env}).stdout
    )["services"]
    assert services["otel-collector"]["volumes"] == shipped["otel-collector"]["volumes"]
    assert services["otel-collector"]["command"] == shipped["otel-collector"]["command"]


def test_docker_compose_config_pins_every_image(rendered: dict[str, Any]) -> None:
    pinned = versions()
    for name, service in rendered["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and "/" not in tag, f"{name}: {image}"
        if "build" in service:
            assert image == f"exai/{name}:local", name
        else:
            assert re.search(r"\d+\.\d+", tag), f"{name}: {image} is not a version tag"
    images = {name: service["image"] for name, service in rendered["services"].items()}
    assert images["otel-collector"] == pinned["OTELCOL_IMAGE"]
    assert images["prometheus"] == pinned["PROMETHEUS_IMAGE"]
    assert images["alertmanager"] == pinned["ALERTMANAGER_IMAGE"]


def test_docker_compose_config_builds_our_services_from_the_repo(rendered: dict[str, Any]) -> None:
    for name, (module, _port_variable) in OUR_SERVICES.items():
        build = rendered["services"][name]["build"]
        assert Path(build["context"]) == REPO_ROOT, name
        assert (Path(build["context"]) / build["dockerfile"]) == DOCKERFILE, name
        assert build["args"] == {
            "SERVICE": module,
            "PORT": str(DESIGN_PORTS[name]),
            "PYTHON_IMAGE": UPSTREAM_PYTHON_IMAGE,
        }, name


def test_docker_compose_config_interpolates_the_secrets(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    assert services["ws-gateway"]["environment"]["EXAI_WS_TOKEN"] == SAMPLE_ENV["EXAI_WS_TOKEN"]
    password = SAMPLE_ENV["POSTGRES_PASSWORD"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == password
    assert (
        services["storage-adapter"]["environment"]["EXAI_DATABASE_URL"]
        == f"postgresql://exai:{password}@postgres:5432/exai"
    )
    assert (
        services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
        == SAMPLE_ENV["GF_SECURITY_ADMIN_PASSWORD"]
    )
    # Optional secrets stay empty, never a default value.
    for service in ("provider-proxy", "storage-adapter"):
        for key, value in services[service]["environment"].items():
            if SECRET_NAME.search(key) and key != "EXAI_WS_TOKEN":
                assert value == "", f"{service}.{key}"


def test_docker_compose_config_bind_mounts_exist_in_the_repo(rendered: dict[str, Any]) -> None:
    for name, service in rendered["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                source = Path(volume["source"])
                assert source.is_relative_to(REPO_ROOT) and source.exists(), f"{name}: {source}"
                assert volume.get("read_only") is True, f"{name}: {source} is writable"
            else:
                assert volume["type"] == "volume" and volume["source"] in RAW["volumes"], name


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
@pytest.mark.parametrize("secret", sorted(REQUIRED_SECRETS))
def test_docker_compose_config_fails_fast_without_a_required_secret(
    compose: Compose, secret: str, value: str | None
) -> None:
    env = {k: v for k, v in SAMPLE_ENV.items() if k != secret}
    if value is not None:
        env[secret] = value
    result = compose.run("config", "--quiet", env_file=env)
    assert result.returncode != 0
    assert f"required variable {secret} is missing a value" in result.stderr, result.stderr


def test_every_dependency_exists_and_waits_for_health_where_there_is_one() -> None:
    for name, service in SERVICES.items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            has_health = "healthcheck" in SERVICES[target] or "build" in SERVICES[target]
            expected = "service_healthy" if has_health else "service_started"
            if target in ONE_SHOT:
                expected = "service_completed_successfully"
            assert spec["condition"] == expected, f"{name} -> {target}"


# ------------------------------------------------------------------ internal tokens

# The service-to-service tokens each service reads (exai_telemetry.internal_auth): a
# callee checks its own, the gateway sends the proxy's and storage's.
TOKEN_READERS: dict[str, set[str]] = {
    "provider-proxy": {"EXAI_PROVIDER_TOKEN"},
    "storage-adapter": {"EXAI_STORAGE_TOKEN"},
    "llm-simulator": {"EXAI_SIMULATOR_ADMIN_TOKEN"},
    "ws-gateway": {"EXAI_PROVIDER_TOKEN", "EXAI_STORAGE_TOKEN"},
}
TOKEN_JOB = "internal-tokens"


def _mounts(service: str) -> dict[str, tuple[str, bool]]:
    """Short-syntax volumes of `service`: target → (source, read-only)."""
    result = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target, *options = volume.split(":")
        result[target] = (source, "ro" in options)
    return result


def _reads(settings_cls: type[Any], variable: str) -> bool:
    return any(f.validation_alias == variable for f in settings_cls.model_fields.values())


@pytest.mark.parametrize("service", sorted(TOKEN_READERS))
def test_each_service_gets_its_internal_tokens_and_only_those(service: str) -> None:
    settings_cls = {
        "ws-gateway": GatewaySettings,
        "provider-proxy": ProxySettings,
        "storage-adapter": StorageSettings,
        "llm-simulator": SimulatorSettings,
    }[service]
    env = SERVICES[service]["environment"]
    mounts = _mounts(service)
    written = _mounts(TOKEN_JOB)
    assert {k for k in env if k.endswith("_TOKEN_FILE")} == {
        f"{variable}_FILE" for variable in TOKEN_READERS[service]
    }
    token_volumes = {source for source, _ in written.values() if source in RAW["volumes"]}
    needed = set()
    for variable in TOKEN_READERS[service]:
        assert variable not in env, f"{service}: a token value in the compose file"
        assert _reads(settings_cls, f"{variable}_FILE"), f"{service} ignores {variable}_FILE"
        path = PurePosixPath(env[f"{variable}_FILE"])
        directory = str(path.parent)
        source, read_only = mounts[directory]
        assert read_only, f"{service}: {source} is writable"
        # The same volume, at the same path, that the job writes the token into.
        assert written[directory] == (source, False), f"{service}: {variable}"
        assert directory in SERVICES[TOKEN_JOB]["entrypoint"]
        needed.add(source)
    # Least privilege: no other service's token.
    assert {source for source, _ in mounts.values()} & token_volumes == needed, service
    assert SERVICES[service]["depends_on"][TOKEN_JOB] == {
        "condition": "service_completed_successfully"
    }


def test_the_token_job_runs_offline_once_and_hands_tokens_to_the_services_user() -> None:
    job = SERVICES[TOKEN_JOB]
    assert job["network_mode"] == "none"
    assert job.get("restart", "no") == "no"
    assert "./deploy/docker/internal_tokens.py:/app/internal_tokens.py:ro" in job["volumes"]
    assert job["entrypoint"][:2] == ["python", "/app/internal_tokens.py"]
    # The services' user in the image must be able to read the files (mode 0400).
    uid, gid = job["environment"]["EXAI_TOKEN_OWNER"].split(":")
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    assert f"--uid {uid}" in dockerfile and f"--gid {gid}" in dockerfile
    users = [rest for keyword, rest in _dockerfile_instructions() if keyword == "USER"]
    assert users[-1] == "exai:exai"


def test_docker_compose_config_mounts_the_token_volumes(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    assert services[TOKEN_JOB]["network_mode"] == "none"
    for service, variables in TOKEN_READERS.items():
        env = services[service]["environment"]
        targets = {
            volume["target"]: volume
            for volume in services[service]["volumes"]
            if volume["type"] == "volume"
        }
        for variable in variables:
            directory = str(PurePosixPath(env[f"{variable}_FILE"]).parent)
            assert targets[directory]["read_only"] is True, f"{service}: {directory}"
        assert services[service]["depends_on"][TOKEN_JOB]["condition"] == (
            "service_completed_successfully"
        )


# ------------------------------------------------------------------ shutdown

# Each service's settings class: its defaults are what compose runs unless the
# service's `environment` sets the variable.
SETTINGS_CLASSES: dict[str, type[ServiceSettings]] = {
    "ws-gateway": GatewaySettings,
    "provider-proxy": ProxySettings,
    "storage-adapter": StorageSettings,
    "llm-simulator": SimulatorSettings,
}
# After drain and flush: lifespan shutdown (closing pools) and interpreter exit.
SHUTDOWN_SLACK_S = 5.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")
_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def compose_duration_s(value: str) -> float:
    """Compose's duration format (Go's: `1m30s`, `45s`, `500ms`)."""
    parts = _DURATION.findall(value)
    assert parts and "".join(n + u for n, u in parts) == value, f"not a duration: {value!r}"
    return sum(float(number) * _UNIT_S[unit] for number, unit in parts)


def test_compose_duration_parser() -> None:
    assert compose_duration_s("1m30s") == 90
    assert compose_duration_s("45s") == 45
    assert compose_duration_s("500ms") == 0.5
    with pytest.raises(AssertionError):
        compose_duration_s("30")


def _setting(service: str, variable: str) -> float:
    """The value the container runs with: its compose environment, else the default."""
    environment = interpolate(SERVICES[service].get("environment") or {}, SAMPLE_ENV)
    cls = SETTINGS_CLASSES[service]
    field = next(f for f in cls.model_fields.values() if f.validation_alias == variable)
    return float(environment.get(variable, field.default))


@pytest.mark.parametrize("service", sorted(OUR_SERVICES))
def test_stop_grace_period_covers_the_drain_and_the_telemetry_flush(service: str) -> None:
    """Docker sends SIGTERM, then SIGKILL after `stop_grace_period` (10 s by default,
    no longer than the services' default drain alone): the drained calls' telemetry
    would be lost, and a call still running at SIGKILL too."""
    grace = _setting(service, "EXAI_SHUTDOWN_GRACE_S")
    flush = _setting(service, "EXAI_TELEMETRY_FLUSH_S")
    if service == "ws-gateway":
        # Calls drain within the grace, then each connection's close handshake.
        drain = grace + CLOSE_TIMEOUT_S
    else:
        drain = math.ceil(grace)  # uvicorn's timeout_graceful_shutdown (exai_telemetry)
    period = SERVICES[service].get("stop_grace_period")
    assert period is not None, f"{service}: no stop_grace_period (Docker's default is 10s)"
    assert compose_duration_s(period) >= drain + flush + SHUTDOWN_SLACK_S, (
        f"{service}: stop_grace_period {period} < drain {drain}s + flush {flush}s"
        f" + {SHUTDOWN_SLACK_S}s"
    )
    assert SERVICES[service].get("stop_signal", "SIGTERM") == "SIGTERM", service


def test_sigterm_reaches_the_service_process_itself() -> None:
    """The shell `exec`s Python: a shell in between would not pass SIGTERM on, and the
    service would drain nothing before SIGKILL."""
    commands = [rest for keyword, rest in _dockerfile_instructions() if keyword == "CMD"]
    assert commands == ['["sh", "-c", "exec python -m \\"$EXAI_SERVICE_MODULE\\""]'], commands


def test_what_a_draining_service_still_needs_is_stopped_after_it() -> None:
    """Compose stops dependents first: the collector outlives every service's final
    flush, and provider-proxy and storage-adapter outlive the gateway's drain (its
    calls and the memory writes of answered calls)."""
    for service in OUR_SERVICES:
        assert "otel-collector" in SERVICES[service]["depends_on"], service
    assert {"provider-proxy", "storage-adapter"} <= set(SERVICES["ws-gateway"]["depends_on"])


# Images with no shell or HTTP client inside: nothing to run a probe with.
DISTROLESS = {"otel-collector", "tempo"}


def test_every_service_but_the_distroless_ones_has_a_healthcheck() -> None:
    for name, service in SERVICES.items():
        if "build" in service or name in ONE_SHOT:
            continue  # the Dockerfile's HEALTHCHECK; nothing to probe in a one-shot job
        if name in DISTROLESS:
            assert "healthcheck" not in service, f"{name}: a probe that cannot run never passes"
            continue
        assert "healthcheck" in service, name


def test_every_bind_mount_source_exists_in_the_repo() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (REPO_ROOT / source).exists(), f"{name}: {source}"
            else:
                assert source in RAW["volumes"], f"{name}: undeclared volume {source}"


def test_build_contexts_and_dockerfiles_exist() -> None:
    for name, service in SERVICES.items():
        if "build" in service:
            build = service["build"]
            assert (REPO_ROOT / build["context"] / build["dockerfile"]).is_file(), name


def test_named_volumes_hold_the_state() -> None:
    assert {"postgres-data", "prometheus-data", "tempo-data", "grafana-data", "loki-data"} <= set(
        RAW["volumes"]
    )
    mounts = {name: " ".join(s.get("volumes", [])) for name, s in SERVICES.items()}
    assert "postgres-data:/var/lib/postgresql/data" in mounts["postgres"]
    assert "prometheus-data:/prometheus" in mounts["prometheus"]
    assert "tempo-data:/var/tempo" in mounts["tempo"]
    assert "grafana-data:/var/lib/grafana" in mounts["grafana"]
    assert "loki-data:/loki" in mounts["loki"]


# ------------------------------------------------------------------ ports


def test_only_grafana_and_the_gateway_publish_ports_on_loopback() -> None:
    published = {name: service["ports"] for name, service in SERVICES.items() if "ports" in service}
    assert published == {"ws-gateway": ["127.0.0.1:8079:8079"], "grafana": ["127.0.0.1:3000:3000"]}


def test_service_ports_match_design() -> None:
    for name, (module, port_variable) in OUR_SERVICES.items():
        service = SERVICES[name]
        args = service["build"]["args"]
        assert (args["SERVICE"], args["PORT"]) == (module, str(DESIGN_PORTS[name]))
        assert service["environment"][port_variable] == str(DESIGN_PORTS[name])
    env = SERVICES["ws-gateway"]["environment"]
    assert env["EXAI_PROVIDER_URL"] == "http://provider-proxy:8090"
    assert env["EXAI_STORAGE_URL"] == "http://storage-adapter:8091"
    for name in OUR_SERVICES:
        environment = {**RAW["x-service-env"], **SERVICES[name]["environment"]}
        assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    collector_env = SERVICES["otel-collector"]["environment"]
    assert collector_env["EXAI_TRACES_ENDPOINT"] == "tempo:4317"
    assert collector_env["EXAI_PROMETHEUS_OTLP_ENDPOINT"] == "http://prometheus:9090/api/v1/otlp"
    checks = " ".join(
        " ".join(s["healthcheck"]["test"]) for s in SERVICES.values() if "healthcheck" in s
    )
    for name in ("prometheus", "alertmanager", "grafana", "loki"):
        assert f"localhost:{DESIGN_PORTS[name]}/" in checks, name
    # Grafana starts once the log store it reads is ready.
    assert SERVICES["grafana"]["depends_on"]["loki"] == {"condition": "service_healthy"}


def test_readme_ports_table_lists_the_same_ports() -> None:
    # The README's table is what users read; it restates DESIGN.md §2 inside the repo.
    table = README.read_text(encoding="utf-8")
    for name in OUR_SERVICES:
        row = next(line for line in table.splitlines() if line.startswith(f"| {name} |"))
        assert f"| {DESIGN_PORTS[name]}" in row, name
    assert "| Prometheus / Alertmanager | 9090 / 9093 |" in table
    assert "| Grafana (compose) | 3000 |" in table
    assert "16686 / 3200" in table


# ------------------------------------------------------------------ images and secrets


# A site without a registry (air-gapped, or this project's CI: deploy/docker/images.sh)
# points each pulled image elsewhere; by default the file names the upstream image.
IMAGE_VARIABLE = re.compile(r"\$\{(EXAI_[A-Z]+_IMAGE):-([^}]+)\}")
UPSTREAM_PYTHON_IMAGE = "python:3.11.13-slim-bookworm"


def _default_images() -> dict[str, str]:
    return {name: interpolate_text(service["image"], {}) for name, service in SERVICES.items()}


def test_images_are_pinned() -> None:
    for name, image in _default_images().items():
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {image}"
        if "build" not in SERVICES[name]:
            assert re.search(r"\d+\.\d+", tag), f"{name}: {image} is not a version tag"


def test_every_pulled_image_is_an_overridable_variable_defaulting_to_upstream() -> None:
    variables: dict[str, str] = {}
    for name, service in SERVICES.items():
        if "build" in service:
            assert service["image"] == f"exai/{name}:local", name
            assert service["build"]["args"]["PYTHON_IMAGE"] == (
                f"${{EXAI_PYTHON_IMAGE:-{UPSTREAM_PYTHON_IMAGE}}}"
            ), name
            continue
        match = IMAGE_VARIABLE.fullmatch(service["image"])
        assert match, f"{name}: image {service['image']!r} is not ${{EXAI_…_IMAGE:-upstream}}"
        variable, default = match.groups()
        # One variable per upstream image, never two defaults for one variable.
        assert variables.setdefault(variable, default) == default, variable
    assert variables["EXAI_PYTHON_IMAGE"] == UPSTREAM_PYTHON_IMAGE
    # images.sh prints an assignment for each image it can build here; Grafana, Tempo and
    # Loki (AGPL) are the ones it cannot.
    script = (REPO_ROOT / "deploy/docker/images.sh").read_text(encoding="utf-8")
    printed = set(re.findall(r"(?m)^(EXAI_[A-Z]+_IMAGE)=", script))
    assert set(variables) - printed == {
        "EXAI_GRAFANA_IMAGE",
        "EXAI_TEMPO_IMAGE",
        "EXAI_LOKI_IMAGE",
    }


def test_telemetry_images_match_the_no_docker_builds() -> None:
    pinned = versions()
    images = _default_images()
    assert images["otel-collector"] == pinned["OTELCOL_IMAGE"]
    assert images["prometheus"] == pinned["PROMETHEUS_IMAGE"]
    assert images["alertmanager"] == pinned["ALERTMANAGER_IMAGE"]


def _environments() -> list[tuple[str, str, str]]:
    result: list[tuple[str, str, str]] = []
    for name, service in {
        "x-service-env": {"environment": RAW["x-service-env"]},
        **SERVICES,
    }.items():
        environment = service.get("environment") or {}
        assert isinstance(environment, dict), f"{name}: use the mapping form"
        result.extend((name, key, str(value)) for key, value in environment.items())
    return result


def test_no_secret_value_is_written_in_the_file() -> None:
    for service, key, value in _environments():
        if SECRET_NAME.search(key):
            # Only ${VAR}, ${VAR:-} (empty) or ${VAR:?message}: never a literal value.
            assert re.fullmatch(r"\$\{[A-Z0-9_]+(:\?[^}]*|:-)?\}", value), (
                f"{service}.{key}={value}"
            )
        # No credentials inside URLs either, except interpolated ones.
        for userinfo in re.findall(r"://([^/@\s]+)@", value):
            assert ":${" in userinfo or ":" not in userinfo, f"{service}.{key}"


def test_env_example_documents_every_variable_the_compose_file_reads() -> None:
    documented = set(
        re.findall(r"(?m)^#?\s*([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(encoding="utf-8"))
    )
    missing = variables_used() - documented
    assert not missing, f"add to .env.example: {sorted(missing)}"
    for name in (
        "KIMI_API_KEY",
        "KIMI_BASE_URL",
        "GLM_API_KEY",
        "GLM_BASE_URL",
        "REDIS_URL",
        "EXAI_DATABASE_URL",
        "SUPABASE_URL",
        "SUPABASE_KEY",
        "EXAI_TRACE_SAMPLE_PERCENT",
    ):
        assert name in documented, name


def test_env_example_sets_no_secret() -> None:
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]+)=(.*)$", line)
        if match and SECRET_NAME.search(match.group(1)):
            assert match.group(2) == "", line


# ------------------------------------------------------------------ Dockerfile


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile_is_multi_stage_pinned_non_root_with_healthcheck() -> None:
    instructions = _dockerfile_instructions()
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(froms) >= 2
    base = next(
        rest
        for keyword, rest in instructions
        if keyword == "ARG" and rest.startswith("PYTHON_IMAGE=")
    )
    image = base.split("=", 1)[1]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", image), image
    assert image == UPSTREAM_PYTHON_IMAGE
    # A `# syntax=` line would make BuildKit pull a frontend image (impossible without a
    # registry); the pip step takes an intercepting proxy's CA only as an optional secret.
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert not re.search(r"(?im)^#\s*syntax=", text)
    pip_step = next(rest for keyword, rest in instructions if "pip install" in rest)
    assert "--mount=type=secret,id=pip-ca,required=false" in pip_step
    assert not re.search(r"(?im)^(COPY|ADD)\b.*\.(crt|pem)\b", text)
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    healthcheck = next(rest for keyword, rest in instructions if keyword == "HEALTHCHECK")
    assert "healthcheck.py" in healthcheck
    assert "/health/ready" in (REPO_ROOT / "deploy/docker/healthcheck.py").read_text(
        encoding="utf-8"
    )
    copied = " ".join(rest for keyword, rest in instructions if keyword == "COPY")
    for source in ("pyproject.toml", "services/", "deploy/docker/healthcheck.py"):
        assert source in copied


def test_dockerfile_context_ignore_keeps_what_the_build_copies() -> None:
    ignore = Path(f"{DOCKERFILE}.dockerignore").read_text(encoding="utf-8").splitlines()
    assert "*" in ignore
    for needed in ("!pyproject.toml", "!services/", "!deploy/docker/healthcheck.py"):
        assert needed in ignore


def test_alert_webhook_shares_alertmanagers_network_for_the_loopback_url() -> None:
    webhook = SERVICES["alert-webhook"]
    assert webhook["network_mode"] == "service:alertmanager"
    assert "./deploy/docker/alert_webhook.py:/app/alert_webhook.py:ro" in webhook["volumes"]
    alertmanager = yaml.safe_load((REPO_ROOT / "deploy/alertmanager/alertmanager.yml").read_text())
    urls = {hook["url"] for r in alertmanager["receivers"] for hook in r["webhook_configs"]}
    assert urls == {"http://127.0.0.1:9095/alerts"}
