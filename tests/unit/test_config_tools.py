"""The config files pass their own tools: otelcol, promtool, amtool, Alertmanager.

The binaries come from deploy/local-stack/build-tools.sh (see tests/config_tools.py):
skipped when not built yet, built (or failed) when CI=true.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.config_tools import (
    LOCAL_COLLECTOR_ENV,
    REPO_ROOT,
    assert_ok,
    run_tool,
    tool,
)

RULE_FILES = sorted(str(p) for p in (REPO_ROOT / "deploy/prometheus/rules").glob("*.yml"))
RULE_TESTS = sorted(str(p) for p in (REPO_ROOT / "deploy/prometheus/tests").glob("*.yml"))
ALERTMANAGER_CONFIG = "deploy/alertmanager/alertmanager.yml"
BENCH_COLLECTOR_CONFIG = "tests/bench/peers/otelcol-bench.yaml"


# ------------------------------------------------------------------ collector


def test_collector_config_is_valid_for_the_local_stack() -> None:
    assert_ok(
        run_tool("otelcol", "validate", "--config", "otel-collector.yaml", env=LOCAL_COLLECTOR_ENV)
    )


def test_collector_config_is_valid_with_compose_defaults() -> None:
    # No EXAI_* variables at all: every ${env:…:-default} must yield a valid config.
    result = subprocess.run(
        [str(tool("otelcol")), "validate", "--config", "otel-collector.yaml"],
        cwd=REPO_ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("EXAI_")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert_ok(result)


def test_benchmark_collector_config_is_valid() -> None:
    # The collector `make bench-peers` exports to (file exporters, to count what arrived).
    env = {
        "EXAI_BENCH_OTLP_PORT": "4318",
        "EXAI_BENCH_HEALTH_PORT": "13133",
        "EXAI_BENCH_TELEMETRY_DIR": "/tmp",
    }
    assert_ok(run_tool("otelcol", "validate", "--config", BENCH_COLLECTOR_CONFIG, env=env))


def test_compose_test_log_sink_config_is_valid() -> None:
    # Loki's stand-in in the compose test (tests/compose/no-agpl.yml).
    assert_ok(run_tool("otelcol", "validate", "--config", "tests/compose/log-sink.yaml"))


def test_collector_rejects_a_broken_config(tmp_path: Path) -> None:
    # Guards the test above: `validate` really parses (here: an OTTL statement).
    text = (REPO_ROOT / "otel-collector.yaml").read_text(encoding="utf-8")
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace("replace_pattern(", "replace_patternX(", 1), encoding="utf-8")
    result = run_tool("otelcol", "validate", "--config", str(broken), env=LOCAL_COLLECTOR_ENV)
    assert result.returncode != 0
    assert "replace_patternX" in result.stderr + result.stdout


# ------------------------------------------------------------------ prometheus


def test_prometheus_config_is_valid() -> None:
    result = run_tool("promtool", "check", "config", "prometheus.yml")
    assert_ok(result)
    assert f"{len(RULE_FILES)} rule files found" in result.stdout


def test_rule_files_are_valid() -> None:
    assert RULE_FILES
    assert_ok(run_tool("promtool", "check", "rules", *RULE_FILES))


def test_rule_unit_tests_pass() -> None:
    assert RULE_TESTS
    result = run_tool("promtool", "test", "rules", *RULE_TESTS)
    assert_ok(result)
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


# ------------------------------------------------------------------ alertmanager


def test_alertmanager_config_is_valid() -> None:
    result = run_tool("amtool", "check-config", ALERTMANAGER_CONFIG)
    assert_ok(result)
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=ProviderCircuitOpen", "severity=page", "gen_ai_provider_name=kimi"], "page"),
        (["alertname=ProviderErrorRatioHigh", "severity=ticket"], "ticket"),
        (["alertname=Watchdog", "severity=info"], "info"),
        (["alertname=Unlabelled"], "ticket"),
    ],
)
def test_alerts_are_routed_by_severity(labels: list[str], receiver: str) -> None:
    result = run_tool(
        "amtool", "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *labels
    )
    assert_ok(result)
    assert result.stdout.split() == [receiver]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def alertmanager_url(tmp_path: Path) -> Iterator[str]:
    """A real Alertmanager with the repo's config on a free loopback port."""
    port = _free_port()
    log_path = tmp_path / "alertmanager.log"
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [
                str(tool("alertmanager")),
                f"--config.file={REPO_ROOT / ALERTMANAGER_CONFIG}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while not _ready(f"{url}/-/ready"):
            if process.poll() is not None or time.monotonic() > deadline:
                log_tail = log_path.read_text(encoding="utf-8")[-3000:]
                pytest.fail(f"alertmanager did not become ready:\n{log_tail}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _post_alerts(url: str, alerts: list[dict[str, object]]) -> None:
    request = urllib.request.Request(
        f"{url}/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def _alert_states(url: str) -> dict[tuple[str, str], dict[str, object]]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=5) as response:
        alerts = json.load(response)
    return {
        (a["labels"]["alertname"], a["labels"].get("gen_ai_provider_name", "")): a["status"]
        for a in alerts
    }


def test_circuit_open_inhibits_error_ratio_for_the_same_provider(alertmanager_url: str) -> None:
    def alert(name: str, severity: str, provider: str) -> dict[str, object]:
        return {
            "labels": {"alertname": name, "severity": severity, "gen_ai_provider_name": provider}
        }

    _post_alerts(
        alertmanager_url,
        [
            alert("ProviderCircuitOpen", "page", "kimi"),
            alert("ProviderErrorRatioHigh", "ticket", "kimi"),
            alert("ProviderErrorRatioHigh", "ticket", "glm"),
        ],
    )
    deadline = time.monotonic() + 10
    while True:
        states = _alert_states(alertmanager_url)
        kimi_ratio = states.get(("ProviderErrorRatioHigh", "kimi"), {})
        if kimi_ratio.get("state") == "suppressed" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert kimi_ratio.get("state") == "suppressed" and kimi_ratio.get("inhibitedBy"), states
    assert states[("ProviderErrorRatioHigh", "glm")]["state"] == "active"
    assert states[("ProviderCircuitOpen", "kimi")]["state"] == "active"


def test_a_fast_burn_inhibits_the_slow_burn_of_its_own_environment_only(
    alertmanager_url: str,
) -> None:
    # Staging's page must not hide production's ticket for the same SLO.
    def alert(name: str, severity: str, env: str) -> dict[str, object]:
        return {
            "labels": {
                "alertname": name,
                "severity": severity,
                "slo": "gateway-first-chunk",
                "deployment_environment_name": env,
            }
        }

    _post_alerts(
        alertmanager_url,
        [
            alert("GatewayFirstChunkBudgetBurnFast", "page", "staging"),
            alert("GatewayFirstChunkBudgetBurnSlow", "ticket", "staging"),
            alert("GatewayFirstChunkBudgetBurnSlow", "ticket", "production"),
        ],
    )

    def states() -> dict[tuple[str, str], str]:
        with urllib.request.urlopen(f"{alertmanager_url}/api/v2/alerts", timeout=5) as response:
            alerts = json.load(response)
        return {
            (a["labels"]["alertname"], a["labels"]["deployment_environment_name"]): a["status"][
                "state"
            ]
            for a in alerts
        }

    deadline = time.monotonic() + 10
    while (found := states()).get(("GatewayFirstChunkBudgetBurnSlow", "staging")) != "suppressed":
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert found == {
        ("GatewayFirstChunkBudgetBurnFast", "staging"): "active",
        ("GatewayFirstChunkBudgetBurnSlow", "staging"): "suppressed",
        ("GatewayFirstChunkBudgetBurnSlow", "production"): "active",
    }


# ------------------------------------------------------------------ build-tools.sh itself
#
# The orchestration (parallel builds, per-tool locks, stamps, progress and ETA, failure
# reporting, interrupts) is tested against a stand-in `go` on PATH that "builds" in a second:
# a real cold build takes minutes. The stand-in answers exactly what build-tools.sh asks
# (`go env`, `go list -m`, `go list -deps`, `go mod download`, `go build -o …`), records each
# build and its flags, and writes executables that answer `--version`.

FAKE_GO = r"""#!/usr/bin/env bash
set -euo pipefail
state="$FAKE_GO_STATE"
case "$1 ${2:-}" in
  "env GOVERSION") echo go1.26.8 ;;
  "env GOMODCACHE") echo "$state/mod" ;;
  "list -m")
    format="$4" module="$5"
    if [[ "$format" == *Dir* ]]; then mkdir -p "$state/mod/$module"; echo "$state/mod/$module"
    else awk -v m="$module" '$1 == m { print $2; exit }' go.mod; fi ;;
  "list -e" | "mod download") ;;
  build\ *)
    shift
    out="" tags="" packages=()
    while (($#)); do
      case "$1" in
        -o) out="$2"; shift 2 ;;
        -tags) tags="$2"; shift 2 ;;
        -ldflags | -modfile) shift 2 ;;
        -*) shift ;;
        *) packages+=("$1"); shift ;;
      esac
    done
    echo "start $(date +%s.%N) $$ ${packages[*]} tags=[$tags]" >>"$state/builds"
    sleep "${FAKE_GO_SLEEP:-1}"
    for p in "${packages[@]}"; do
      if [[ -n "${FAKE_GO_FAIL:-}" && "$p" == *"$FAKE_GO_FAIL" ]]; then
        echo "$p: fake compile error" >&2
        exit 1
      fi
    done
    targets=()
    if [[ "$out" == */ ]]; then for p in "${packages[@]}"; do targets+=("$out${p##*/}"); done
    else targets+=("$out"); fi
    for t in "${targets[@]}"; do printf '#!/bin/sh\necho "fake $0"\n' >"$t"; chmod +x "$t"; done
    echo "end $(date +%s.%N) $$" >>"$state/builds"
    ;;
  *) echo "fake go: unexpected: $*" >&2; exit 2 ;;
esac
"""

ALL_TOOLS = ["otelcol", "prometheus", "alertmanager", "jaeger", "compose", "buildx"]


class Script:
    """A copy of deploy/local-stack (script, versions, tool modules) run with the stand-in go."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "local-stack"
        self.dir.mkdir()
        source = REPO_ROOT / "deploy" / "local-stack"
        (self.dir / "build-tools.sh").write_text(
            (source / "build-tools.sh").read_text(encoding="utf-8"), encoding="utf-8"
        )
        for sub in ("tools", "otelcol"):
            subprocess.run(["cp", "-R", str(source / sub), str(self.dir / sub)], check=True)
        self.cache = root / "cache"
        self.state = root / "fake-go"
        (self.state / "bin").mkdir(parents=True)
        go = self.state / "bin" / "go"
        go.write_text(FAKE_GO, encoding="utf-8")
        go.chmod(0o755)
        self.env = {
            **os.environ,
            "PATH": f"{self.state / 'bin'}:{os.environ['PATH']}",
            "FAKE_GO_STATE": str(self.state),
            "EXAI_TOOLS_DIR": str(self.cache),
            "EXAI_TOOLS_PROGRESS": "1",
        }
        self.env.pop("EXAI_TOOLS_GOCACHE", None)
        self.env.pop("EXAI_TOOLS_JOBS", None)

    def command(self, *args: str) -> list[str]:
        return ["bash", str(self.dir / "build-tools.sh"), *args]

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def status(self) -> dict[str, str]:
        result = self.run("list")
        assert result.returncode == 0, result.stderr
        return {line.split()[0]: line.split()[2] for line in result.stdout.splitlines()}

    def builds(self) -> list[str]:
        path = self.state / "builds"
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        return [line for line in lines if line.startswith("start ")]

    def max_parallel(self) -> int:
        events = []
        for line in (self.state / "builds").read_text(encoding="utf-8").splitlines():
            kind, stamp = line.split()[:2]
            events.append((float(stamp), 1 if kind == "start" else -1))
        running = peak = 0
        for _, delta in sorted(events):
            running += delta
            peak = max(peak, running)
        return peak


def _running(pid: int) -> bool:
    """True if the process exists and is not a zombie (an orphan nobody has reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def script(tmp_path: Path) -> Script:
    return Script(tmp_path)


def test_build_script_builds_in_parallel_with_progress_eta_and_summary(script: Script) -> None:
    result = script.run("build", FAKE_GO_SLEEP="2.5")
    assert result.returncode == 0, result.stderr
    # A progress line per running tool, with its expected time, then an overall ETA.
    assert re.search(
        r"building prometheus 3\.16\.0 \(typically ~\d+ s cold\) … \d+ s elapsed", result.stderr
    ), result.stderr
    n = len(ALL_TOOLS)
    assert re.search(rf"\d/{n} done, \d building, \d queued: about .+ left", result.stderr)
    # The summary: every tool built, with its wall and CPU time, and its binaries.
    for name in ALL_TOOLS:
        assert re.search(rf"\[tools\]\s+{name}\s+\S+\s+built\s+\d+ s\s+\d+ s\s+/", result.stdout), (
            result.stdout
        )
    assert set(script.status().values()) == {"present"}
    assert script.max_parallel() == 2  # EXAI_TOOLS_JOBS defaults to 2
    assert len(script.builds()) == n  # one go build per tool (prometheus+promtool together)
    env_file = (script.cache / "env.sh").read_text(encoding="utf-8")
    assert f"EXAI_PROMTOOL_BIN='{script.cache}/prometheus-3.16.0/promtool'" in env_file
    assert not list(script.cache.glob(".run-*"))

    again = script.run("build")
    assert again.returncode == 0, again.stderr
    assert len(script.builds()) == n  # nothing rebuilt
    assert all(re.search(rf"{name}\s+\S+\s+cached", again.stdout) for name in ALL_TOOLS)


def test_build_script_can_build_one_tool_at_a_time(script: Script) -> None:
    result = script.run("build", "otelcol", "jaeger", EXAI_TOOLS_JOBS="1")
    assert result.returncode == 0, result.stderr
    assert script.max_parallel() == 1
    assert script.status() == {
        "otelcol": "present",
        "prometheus": "missing",
        "alertmanager": "missing",
        "jaeger": "present",
        "compose": "missing",
        "buildx": "missing",
    }


def test_prometheus_is_built_without_the_service_discovery_plugins(script: Script) -> None:
    assert script.run("build", "prometheus").returncode == 0
    (build,) = script.builds()
    assert "cmd/prometheus" in build and "cmd/promtool" in build
    assert "tags=[netgo remove_all_sd]" in build


def test_a_changed_recipe_or_module_rebuilds_only_that_tool(script: Script) -> None:
    assert script.run("build").returncode == 0
    text = (script.dir / "build-tools.sh").read_text(encoding="utf-8")
    old = 'PROMETHEUS_TAGS="netgo remove_all_sd"'
    assert old in text
    (script.dir / "build-tools.sh").write_text(
        text.replace(old, 'PROMETHEUS_TAGS="netgo remove_all_sd enable_dns_sd"'), encoding="utf-8"
    )
    with (script.dir / "tools" / "jaeger" / "go.mod").open("a", encoding="utf-8") as go_mod:
        go_mod.write("// changed\n")
    assert script.status() == {
        "otelcol": "present",
        "prometheus": "missing",
        "alertmanager": "present",
        "jaeger": "missing",
        "compose": "present",
        "buildx": "present",
    }
    # The ETA of a rebuild is what the last build of that tool took on this machine.
    plan = script.run("plan")
    assert re.search(r"prometheus\s+3\.16\.0\s+build\s+~\d+ s last time here", plan.stdout)
    assert re.search(r"otelcol\s+0\.161\.0\s+present", plan.stdout)

    assert script.run("build").returncode == 0
    rebuilt = script.builds()[len(ALL_TOOLS) :]
    assert len(rebuilt) == 2
    assert any("enable_dns_sd" in line for line in rebuilt)
    assert set(script.status().values()) == {"present"}


def test_a_failed_build_shows_its_output_and_the_others_still_build(script: Script) -> None:
    result = script.run("build", FAKE_GO_FAIL="cmd/promtool")
    assert result.returncode != 0
    assert "prometheus 3.16.0 FAILED" in result.stderr
    assert "cmd/promtool: fake compile error" in result.stderr  # the go output's tail
    assert re.search(r"prometheus\s+3\.16\.0\s+failed", result.stdout)
    status = script.status()
    assert status.pop("prometheus") == "missing"
    assert set(status.values()) == {"present"}
    assert not list(script.cache.glob(".run-*"))
    assert not list(script.cache.glob("prometheus-*"))

    path = script.run("path", "promtool", FAKE_GO_FAIL="cmd/promtool")
    assert path.returncode != 0
    assert path.stdout == ""
    assert "cannot provide promtool" in path.stderr


def test_concurrent_callers_build_each_tool_once(script: Script) -> None:
    env = {**script.env, "FAKE_GO_SLEEP": "1.5"}
    first = subprocess.Popen(script.command("build"), env=env, text=True, stdout=subprocess.PIPE)
    second = subprocess.Popen(
        script.command("path", "otelcol"), env=env, text=True, stdout=subprocess.PIPE
    )
    first.communicate(timeout=120)
    second_out, _ = second.communicate(timeout=120)
    assert first.returncode == 0 and second.returncode == 0
    assert second_out.strip() == f"{script.cache}/otelcol-0.161.0/otelcol"
    built = [line.split()[3] for line in script.builds()]  # the first package
    assert len(built) == len(set(built)) == len(ALL_TOOLS), built


def test_an_interrupted_build_stops_its_go_processes_and_leaves_no_half_tool(
    script: Script,
) -> None:
    process = subprocess.Popen(
        script.command("build"),
        env={**script.env, "FAKE_GO_SLEEP": "60"},
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while len(script.builds()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(script.builds()) == 2
    # SIGTERM (a CI timeout, `kill`); Ctrl-C's SIGINT takes the same path, but a harness that
    # starts the tests in the background makes SIGINT ignored, so it cannot be tested here.
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode != 0
    assert "interrupted" in stderr
    go_pids = [int(line.split()[2]) for line in script.builds()]
    time.sleep(0.5)
    assert not [pid for pid in go_pids if _running(pid)]
    assert set(script.status().values()) == {"missing"}
    assert not list(script.cache.glob(".run-*"))
