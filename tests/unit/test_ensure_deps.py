"""deploy/local-stack/ensure-deps.sh, the first step of `make test`: on a machine without
Redis, Postgres or Go it must stop within seconds and say what to run, not 25 minutes later.

Each test runs the script with a PATH holding only a temporary directory of fake tools
(redis-server, go, apt-get, sudo, service, ...), a fake Postgres lib directory
(EXAI_POSTGRES_LIB) and no Go search directories (EXAI_GO_DIRS), so the machine's own
Redis, Postgres and Go never count and nothing is really installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.config_tools import REPO_ROOT

SCRIPT = REPO_ROOT / "deploy" / "local-stack" / "ensure-deps.sh"
BASH = shutil.which("bash") or "/bin/bash"
CP = shutil.which("cp") or "/bin/cp"
FAST_S = 5.0


@dataclass
class Machine:
    bin: Path  # the whole PATH
    stage: Path  # what the fake apt-get "installs" into bin
    pg_lib: Path
    home: Path
    calls: Path  # argv of every apt-get / sudo / service call, one per line

    def tool(self, name: str, body: str = "exit 0", where: Path | None = None) -> Path:
        path = (where or self.bin) / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
        return path

    def go(self, version: str, where: Path | None = None) -> Path:
        return self.tool("go", f'echo "go{version}"', where)

    def postgres(self) -> None:
        (self.pg_lib / "15" / "bin").mkdir(parents=True)
        self.tool("initdb", where=self.pg_lib / "15" / "bin")

    def calls_made(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    def run(self, *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
        environ = {
            "PATH": str(self.bin),
            "HOME": str(self.home),
            "EXAI_POSTGRES_LIB": str(self.pg_lib),
            "EXAI_GO_DIRS": "",
            **env,
        }
        started = time.monotonic()
        result = subprocess.run(
            [BASH, str(SCRIPT), *args],
            env=environ,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return result, time.monotonic() - started


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    m = Machine(
        bin=tmp_path / "bin",
        stage=tmp_path / "stage",
        pg_lib=tmp_path / "postgresql",
        home=tmp_path / "home",
        calls=tmp_path / "calls.log",
    )
    for directory in (m.bin, m.stage, m.pg_lib, m.home):
        directory.mkdir()
    # The only real programs the script runs: bash, and env in front of apt-get.
    for name in ("bash", "env"):
        real = shutil.which(name)
        assert real is not None, name
        (m.bin / name).symlink_to(real)
    # Installing records the call and "installs" whatever is staged for the package.
    m.tool(
        "apt-get",
        f'echo "apt-get $DEBIAN_FRONTEND $*" >> "{m.calls}"\n'
        'if [ "$1" = install ]; then\n'
        '  for p in "$@"; do [ -e "$STAGE/$p" ] && '
        f'{CP} -p "$STAGE/$p" "{m.bin}/$p"; done\n'
        "fi\n"
        "exit ${APT_EXIT:-0}",
    )
    m.tool("sudo", f'echo "sudo $*" >> "{m.calls}"\n[ "$1" = -n ] && shift\nexec "$@"')
    m.tool("true", "exit 0")
    m.tool("service", f'echo "service $*" >> "{m.calls}"')
    return m


@pytest.mark.parametrize(
    ("args", "env"),
    [(("--check",), {}), ((), {"EXAI_DEPS_INSTALL": "never"})],
    ids=["--check", "EXAI_DEPS_INSTALL=never"],
)
def test_missing_redis_stops_within_seconds_naming_it_and_the_apt_command(
    machine: Machine, args: tuple[str, ...], env: dict[str, str]
) -> None:
    machine.postgres()
    machine.go("1.26.8")

    result, elapsed = machine.run(*args, **env)

    assert result.returncode != 0
    assert elapsed < FAST_S
    assert "redis-server" in result.stderr
    assert re.search(
        r"apt-get update && (sudo )?apt-get install -y redis-server$", result.stderr, re.M
    )
    assert "postgres" not in result.stderr.lower()
    assert "Go" not in result.stderr
    assert result.stdout == ""
    assert machine.calls_made() == []


def test_everything_present_prints_nothing_and_installs_nothing(machine: Machine) -> None:
    machine.tool("redis-server")
    machine.postgres()
    machine.go("1.26.7")

    result, elapsed = machine.run()  # auto mode: would install if anything were missing

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert elapsed < FAST_S
    assert machine.calls_made() == []


def test_everything_missing_is_named_in_one_message_and_nothing_is_installed(
    machine: Machine,
) -> None:
    # Go cannot come from apt, so even a root user gets the whole list at once, not an
    # apt-get run followed by a failure.
    result, elapsed = machine.run()

    assert result.returncode == 1
    assert elapsed < FAST_S
    err = result.stderr
    assert "redis-server" in err
    assert "initdb" in err
    assert "Go >= 1.26.7" in err and "https://go.dev/dl/" in err
    assert re.search(r"apt-get install -y redis-server postgresql$", err, re.M)
    assert machine.calls_made() == []


def test_a_go_older_than_the_pinned_modules_need_is_named_with_its_version(
    machine: Machine,
) -> None:
    machine.go("1.26.6")

    result, _ = machine.run("--check", "go")

    assert result.returncode == 1
    assert "go 1.26.6, older than 1.26.7" in result.stderr
    assert "apt-get" not in result.stderr


def test_a_new_go_off_path_is_named_with_the_path_to_set(machine: Machine) -> None:
    go_bin = machine.home / "go" / "bin"
    go_bin.mkdir(parents=True)
    machine.go("1.26.8", where=go_bin)

    result, _ = machine.run("--check", "go", EXAI_GO_DIRS=str(go_bin))

    assert result.returncode == 1
    assert f'export PATH="{go_bin}:$PATH"' in result.stderr


def test_installs_only_what_is_missing_then_stops_its_service(machine: Machine) -> None:
    machine.postgres()
    machine.go("1.26.8")
    machine.tool("redis-server", where=machine.stage)

    result, _ = machine.run(STAGE=str(machine.stage))

    assert result.returncode == 0, result.stderr
    apt = [call for call in machine.calls_made() if "apt-get" in call]
    assert apt == [
        "apt-get noninteractive update -qq",
        "apt-get noninteractive install -y -qq redis-server",
    ]
    assert "service redis-server stop" in machine.calls_made()
    assert not any("postgresql" in call for call in machine.calls_made())
    if os.geteuid() != 0:
        assert "sudo -n true" in machine.calls_made()
    assert "installed redis-server" in result.stderr


def test_a_failed_apt_get_names_the_command_to_run(machine: Machine) -> None:
    machine.postgres()
    machine.go("1.26.8")

    result, _ = machine.run(STAGE=str(machine.stage), APT_EXIT="100")

    assert result.returncode == 1
    assert re.search(r"apt-get install -y redis-server$", result.stderr, re.M)


def test_the_test_targets_check_first_and_make_run_does_not() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    for target in ("test", "test-integration", "test-e2e"):
        assert re.search(rf"^{target}: deps ", makefile, re.M), target
    run = re.search(r"^run:(.*)$", makefile, re.M)
    assert run is not None and "deps" not in run.group(1).split("##")[0]


def test_no_docker_engine_is_named_with_the_packages_the_compose_test_needs(
    machine: Machine,
) -> None:
    machine.tool("redis-server")
    machine.postgres()
    machine.go("1.26.8")

    result, elapsed = machine.run("--check", "redis", "postgres", "go", "docker")

    assert result.returncode == 1
    assert elapsed < FAST_S
    assert "Docker engine" in result.stderr and "debootstrap" in result.stderr
    assert re.search(r"apt-get install -y docker\.io debootstrap$", result.stderr, re.M)


def test_an_engine_that_answers_is_enough_for_upstream_images(machine: Machine) -> None:
    machine.tool("docker", 'test "$1" = info')
    timeout = shutil.which("timeout")
    assert timeout is not None
    (machine.bin / "timeout").symlink_to(timeout)

    result, _ = machine.run("--check", "docker", EXAI_COMPOSE_IMAGES="upstream")
    assert (result.returncode, result.stderr) == (0, "")
    # Local images are built from a debootstrap base: that one is still needed.
    result, _ = machine.run("--check", "docker")
    assert result.returncode == 1 and "debootstrap" in result.stderr


def test_make_test_checks_for_docker_too() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    for target in ("test", "test-compose"):
        rule = re.search(rf"^{target}: DEPS_NEEDED := (.*)$", makefile, re.M)
        assert rule is not None and "docker" in rule.group(1).split(), target
