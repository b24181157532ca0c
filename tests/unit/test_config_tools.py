"""The config files pass their own tools: otelcol, promtool, amtool, Alertmanager.

The binaries come from deploy/local-stack/build-tools.sh (see tests/config_tools.py):
skipped when not built yet, built (or failed) when CI=true.
"""

from __future__ import annotations

import json
import os
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
