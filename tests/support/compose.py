"""Drive `docker compose` for the compose test: one project, its files and environment.

Every call goes through the real CLI (the Compose plugin of the machine's Docker client),
the way an operator runs the stack; nothing here talks to the engine's API directly.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "deploy" / "docker" / "engine.sh"
IMAGES = ROOT / "deploy" / "docker" / "images.sh"
# local: images built here (deploy/docker/images.sh) and the AGPL stand-ins; upstream: pulled.
MODE = os.environ.get("EXAI_COMPOSE_IMAGES", "local")


class ComposeError(RuntimeError):
    """A `docker compose` command failed; the message has its output."""


def run_script(script: Path, *args: str, timeout_s: float) -> str:
    """Run one of deploy/docker's scripts; its progress goes to the test's output."""
    result = subprocess.run(
        ["bash", str(script), *args],
        stdout=subprocess.PIPE,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if result.returncode != 0:
        raise ComposeError(f"{script.name} {' '.join(args)} failed ({result.returncode})")
    return result.stdout


def image_variables() -> dict[str, str]:
    """The EXAI_*_IMAGE assignments `images.sh env` prints."""
    out = run_script(IMAGES, "env", timeout_s=30)
    pairs = (line.split("=", 1) for line in out.splitlines() if "=" in line)
    return {name: value for name, value in pairs if not name.startswith("#")}


@dataclass
class Compose:
    project: str
    files: Sequence[Path]
    env: Mapping[str, str]
    env_file: Path

    def run(self, *args: str, timeout_s: float = 120, check: bool = True) -> str:
        argv = [
            "docker",
            "compose",
            "--project-name",
            self.project,
            "--env-file",
            str(self.env_file),
        ]
        for file in self.files:
            argv += ["--file", str(file)]
        result = subprocess.run(
            [*argv, *args],
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if check and result.returncode != 0:
            raise ComposeError(
                f"docker compose {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-4000:]}"
            )
        return result.stdout

    def up(self, *extra: str, timeout_s: float = 600) -> None:
        wait = ["--detach", "--wait", "--wait-timeout", str(int(timeout_s))]
        self.run("up", *wait, *extra, timeout_s=timeout_s + 60)

    def down(self, *, volumes: bool) -> None:
        self.run("down", "--timeout", "30", *(["--volumes"] if volumes else []), timeout_s=180)

    def address(self, service: str, port: int) -> str:
        """host:port where a published container port answers (127.0.0.1, a free port)."""
        out = self.run("port", service, str(port)).strip().splitlines()
        if not out:
            raise ComposeError(f"{service}:{port} is not published")
        return out[-1]

    def url(self, service: str, port: int, scheme: str = "http") -> str:
        return f"{scheme}://{self.address(service, port)}"

    def exec(self, service: str, *command: str, timeout_s: float = 120) -> str:
        return self.run("exec", "-T", service, *command, timeout_s=timeout_s)

    def logs(self, *services: str) -> str:
        return self.run("logs", "--no-color", "--no-log-prefix", *services, timeout_s=120)

    def containers(self, *, all_states: bool = False) -> list[dict[str, Any]]:
        """`docker compose ps --format json`: one object per container."""
        out = self.run("ps", "--format", "json", *(["--all"] if all_states else []))
        text = out.strip()
        if not text:
            return []
        if text.startswith("["):
            return list(json.loads(text))
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def container_id(self, service: str) -> str:
        ids = self.run("ps", "--all", "--quiet", service).split()
        if len(ids) != 1:
            raise ComposeError(f"{service}: expected one container, found {ids}")
        return ids[0]

    def inspect(self, service: str) -> dict[str, Any]:
        out = subprocess.run(
            ["docker", "inspect", self.container_id(service)],
            stdout=subprocess.PIPE,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        return dict(json.loads(out)[0])


@dataclass
class ComposeStack:
    """The running compose project the tests share, and what it holds."""

    compose: Compose
    upstream: bool
    log_dir: Path
    # Secrets the test itself chose (fake provider keys), besides those in the environment.
    fake_keys: tuple[str, ...]

    @property
    def ws_token(self) -> str:
        return self.compose.env["EXAI_WS_TOKEN"]

    @property
    def gateway_url(self) -> str:
        return self.compose.url("ws-gateway", 8079, scheme="ws")

    def internal_token(self, service: str, directory: str) -> str:
        """A service-to-service token, read where its service reads it."""
        return self.compose.exec(service, "cat", f"/run/exai/{directory}/token").strip()

    def secrets(self) -> list[str]:
        env = self.compose.env
        return [
            *self.fake_keys,
            env["EXAI_WS_TOKEN"],
            env["POSTGRES_PASSWORD"],
            env["GF_SECURITY_ADMIN_PASSWORD"],
            self.internal_token("provider-proxy", "provider"),
            self.internal_token("storage-adapter", "storage"),
            self.internal_token("llm-simulator", "simulator-admin"),
        ]
