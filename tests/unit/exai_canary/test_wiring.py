"""The canary runs wherever the gateway does: compose, `make run` (and so the end-to-end
stacks), the locally built images; its compose service is wired like our other services."""

from __future__ import annotations

import re
from pathlib import Path

from exai_canary.settings import CanarySettings
from exai_telemetry.settings import ServiceSettings
from tests.config_tools import REPO_ROOT, load_yaml
from tests.support.stack import load_stack_module

COMPOSE = load_yaml("docker-compose.yml")
CANARY = COMPOSE["services"]["canary"]
PORT = CanarySettings.model_fields["port"].default


def _field(name: str) -> float:
    return float(ServiceSettings.model_fields[name].default)


def test_compose_builds_it_like_our_other_services() -> None:
    gateway = COMPOSE["services"]["ws-gateway"]
    assert CANARY["build"]["context"] == gateway["build"]["context"]
    assert CANARY["build"]["dockerfile"] == gateway["build"]["dockerfile"]
    assert CANARY["build"]["args"]["SERVICE"] == "exai_canary"
    assert CANARY["build"]["args"]["PYTHON_IMAGE"] == gateway["build"]["args"]["PYTHON_IMAGE"]
    # The image's HEALTHCHECK probes /health/ready on PORT: the port the canary serves.
    assert CANARY["build"]["args"]["PORT"] == str(PORT)
    assert CANARY["environment"]["EXAI_CANARY_PORT"] == str(PORT)
    assert CANARY["image"] == "exai/canary:local"
    assert CANARY["read_only"] is True
    assert "ports" not in CANARY  # health is for the engine, not published
    assert CANARY["restart"] == "unless-stopped"


def test_compose_points_it_at_the_gateway_with_a_client_token() -> None:
    env = CANARY["environment"]
    gateway_port = COMPOSE["services"]["ws-gateway"]["environment"]["EXAI_WS_PORT"]
    assert env["EXAI_CANARY_GATEWAY_URL"] == f"ws://ws-gateway:{gateway_port}"
    assert env["EXAI_WS_TOKEN"] == COMPOSE["services"]["ws-gateway"]["environment"]["EXAI_WS_TOKEN"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    # Off unless the operator chooses a model: every chat is billed.
    assert env["EXAI_CANARY_CHAT_MODEL"] == "${EXAI_CANARY_CHAT_MODEL:-}"
    assert CANARY["depends_on"]["ws-gateway"] == {"condition": "service_healthy"}
    assert "otel-collector" in CANARY["depends_on"]


def test_compose_stop_grace_covers_the_final_telemetry_flush() -> None:
    period = re.fullmatch(r"(\d+)s", CANARY["stop_grace_period"])
    assert period is not None
    assert int(period.group(1)) >= _field("shutdown_grace_s") + _field("telemetry_flush_s") + 5


def test_the_local_stack_starts_it_last_with_its_readiness_url(tmp_path: Path) -> None:
    stack = load_stack_module()
    procs = stack.processes(tmp_path, {"REDIS_URL": "", "EXAI_DATABASE_URL": "sqlite:///x"})
    names = [proc.name for proc in procs]
    assert names.index("canary") > names.index("ws-gateway")
    canary = next(proc for proc in procs if proc.name == "canary")
    assert canary.argv[1:] == ["-m", "exai_canary"]
    assert canary.ready_url == f"http://127.0.0.1:{PORT}/health/ready"
    assert canary.env["EXAI_CANARY_GATEWAY_URL"] == "ws://127.0.0.1:8079"
    # A client, not a service: no internal token.
    assert not [name for name in canary.env if name.endswith("_TOKEN_FILE")]


def test_the_local_image_build_makes_the_image_compose_names() -> None:
    script = (REPO_ROOT / "deploy/docker/images.sh").read_text(encoding="utf-8")
    assert f"exai_canary:{PORT}" in script
    assert 'name="${name#exai-}"' in script  # exai_canary → exai/canary:local
