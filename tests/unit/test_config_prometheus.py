"""Static checks of prometheus.yml, the alert rules and their promtool tests.

promtool itself runs in test_config_tools.py; these tests check what it cannot: the
alert conventions (severity, annotations, runbook entries), that every alert has a
"fires" and a "stays quiet" unit test, the timing the end-to-end alert test relies on,
and that rules only use metric names Prometheus really stores.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.config_tools import (
    KNOWN_METRICS,
    REPO_ROOT,
    alert_rules,
    load_yaml,
    metric_names_in,
    recording_rule_names,
)

PROMETHEUS = load_yaml("prometheus.yml")
TESTS_DIR = REPO_ROOT / "deploy" / "prometheus" / "tests"
TARGETS_DIR = REPO_ROOT / "deploy" / "prometheus" / "targets"
RUNBOOKS = REPO_ROOT / "docs" / "runbooks.md"
SEVERITIES = {"page", "ticket", "info"}
ALERTS = sorted({rule["alert"] for _, rule in alert_rules()})


def _duration_s(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", text))


# ------------------------------------------------------------------ prometheus.yml


def test_otlp_ingestion_translates_names_and_promotes_resource_attributes() -> None:
    otlp = PROMETHEUS["otlp"]
    assert otlp["translation_strategy"] == "UnderscoreEscapingWithSuffixes"
    assert {"service.name", "service.instance.id", "deployment.environment.name"} <= set(
        otlp["promote_resource_attributes"]
    )
    assert PROMETHEUS["storage"]["tsdb"]["out_of_order_time_window"]
    assert PROMETHEUS["storage"]["exemplars"]["max_exemplars"] > 0


def test_rules_are_evaluated_often_enough_for_the_provider_alert() -> None:
    assert _duration_s(PROMETHEUS["global"]["evaluation_interval"]) <= 15
    assert PROMETHEUS["rule_files"] == ["deploy/prometheus/rules/*.yml"]


def _sd_files() -> list[str]:
    files = []
    for job in PROMETHEUS["scrape_configs"]:
        for sd in job.get("file_sd_configs", []):
            files.extend(sd["files"])
    for am in PROMETHEUS["alerting"]["alertmanagers"]:
        for sd in am["file_sd_configs"]:
            files.extend(sd["files"])
    return files


def test_scrape_jobs_cover_prometheus_collector_and_alertmanager() -> None:
    jobs = {job["job_name"] for job in PROMETHEUS["scrape_configs"]}
    assert {"prometheus", "otel-collector", "alertmanager"} <= jobs


@pytest.mark.parametrize("stack", ["local", "compose"])
def test_each_stack_provides_every_target_file(stack: str) -> None:
    for relative in _sd_files():
        # prometheus.yml names the local folder; compose mounts its own folder there.
        path = TARGETS_DIR / stack / Path(relative).name
        assert path.exists(), path
        groups = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert isinstance(groups, list) and groups
        for group in groups:
            assert set(group) <= {"targets", "labels"}
            assert all(re.fullmatch(r"[a-z0-9.-]+:\d+", t) for t in group["targets"])


def test_target_hosts_match_each_stack() -> None:
    for relative in _sd_files():
        assert relative.startswith("deploy/prometheus/targets/local/")
        name = Path(relative).name
        local = (TARGETS_DIR / "local" / name).read_text(encoding="utf-8")
        compose = (TARGETS_DIR / "compose" / name).read_text(encoding="utf-8")
        assert "127.0.0.1:" in local
        assert "127.0.0.1" not in compose
    ports = {"otel-collector.yml": "8888", "alertmanager.yml": "9093", "prometheus.yml": "9090"}
    for name, port in ports.items():
        for stack in ("local", "compose"):
            assert f":{port}" in (TARGETS_DIR / stack / name).read_text(encoding="utf-8")


# ------------------------------------------------------------------ alert conventions


@pytest.mark.parametrize(("rule_file", "rule"), list(alert_rules()), ids=lambda x: str(x)[:40])
def test_alert_has_severity_and_annotations(rule_file: str, rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert {"summary", "description", "runbook_url"} <= set(annotations)
    assert annotations["runbook_url"] == f"docs/runbooks.md#{rule['alert'].lower()}"


def test_every_alert_has_a_runbook_entry() -> None:
    headings = set(re.findall(r"(?m)^## (\S+)\s*$", RUNBOOKS.read_text(encoding="utf-8")))
    assert set(ALERTS) <= headings, set(ALERTS) - headings


def test_rules_use_only_metrics_prometheus_stores() -> None:
    known = KNOWN_METRICS | recording_rule_names()
    for path in sorted((REPO_ROOT / "deploy/prometheus/rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                unknown = metric_names_in(rule["expr"]) - known
                assert not unknown, (rule.get("alert") or rule.get("record"), unknown)


def test_metric_name_extraction_ignores_labels() -> None:
    expr = (
        'sum by (service_name) (rate(exai_gateway_calls_total{exai_outcome="error"}[5m]))'
        ' / on (gen_ai_provider_name) up{job="x"} == 0'
    )
    assert metric_names_in(expr) == {"exai_gateway_calls_total", "up"}


def test_provider_alert_reaches_alertmanager_within_two_minutes() -> None:
    # End-to-end test 5 forces provider 500s and waits for the webhook.
    rules = {rule["alert"]: rule for _, rule in alert_rules()}
    eval_s = _duration_s(PROMETHEUS["global"]["evaluation_interval"])
    for name in ("ProviderErrorRatioHigh", "ProviderCircuitOpen"):
        rule = rules[name]
        windows = [_duration_s(w) for w in re.findall(r"\[(\d+[smhd])\]", rule["expr"])]
        assert _duration_s(rule["for"]) <= 60, name
        assert eval_s + _duration_s(rule["for"]) + 30 <= 120, name
        assert all(w <= 60 for w in windows), name
    ratio_rule = next(
        rule
        for path in (REPO_ROOT / "deploy/prometheus/rules").glob("*.yml")
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
        if rule.get("record") == "exai:provider_request_errors:ratio_rate1m"
    )
    assert "[1m]" in ratio_rule["expr"]


# ------------------------------------------------------------------ promtool test coverage


def _alert_tests() -> list[tuple[str, bool]]:
    """(alertname, fires) for every alert_rule_test in deploy/prometheus/tests/."""
    cases = []
    for path in sorted(TESTS_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for case in group.get("alert_rule_test", []):
                cases.append((case["alertname"], bool(case.get("exp_alerts"))))
    return cases


@pytest.mark.parametrize("alert", ALERTS)
def test_alert_is_unit_tested_firing_and_quiet(alert: str) -> None:
    cases = _alert_tests()
    assert (alert, True) in cases, f"{alert}: no test where it fires"
    if alert != "Watchdog":  # always firing, by design
        assert (alert, False) in cases, f"{alert}: no test where it stays quiet"


def test_every_telemetry_stage_is_unit_tested() -> None:
    stages = {
        rule["labels"]["stage"]
        for _, rule in alert_rules()
        if rule["alert"] == "TelemetryPipelineLosingData"
    }
    tested = set()
    for path in TESTS_DIR.glob("*.yml"):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for case in group.get("alert_rule_test", []):
                for alert in case.get("exp_alerts") or []:
                    if "stage" in alert["exp_labels"]:
                        tested.add(alert["exp_labels"]["stage"])
    assert stages == tested


def test_rule_tests_load_the_repo_rule_files() -> None:
    for path in TESTS_DIR.glob("*.yml"):
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        for rule_file in spec["rule_files"]:
            assert (path.parent / rule_file).resolve().is_file(), (path.name, rule_file)
