"""Checks of prometheus.yml, the alert rules, their links and timings, and their tests.

promtool runs on the shipped files in test_config_tools.py; these tests check what it
cannot: the alert conventions (severity, absolute runbook and dashboard links, runbook
entries), that every alert has a "fires" and a "stays quiet" unit test, that production
timings ship while the end-to-end ones stay an overlay (and both variants pass promtool
and amtool), that every knob the runbooks name can be set, and that rules only use
metric names Prometheus really stores. One test runs the real Prometheus to prove the
link bases come from its environment.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.config_tools import (
    KNOWN_METRICS,
    REPO_ROOT,
    alert_rules,
    assert_ok,
    load_yaml,
    metric_names_in,
    recording_rule_names,
    run_tool,
    tool,
)
from tests.support.stack import load_stack_module

PROMETHEUS = load_yaml("prometheus.yml")
RULES_DIR = REPO_ROOT / "deploy" / "prometheus" / "rules"
E2E_RULES_DIR = RULES_DIR / "e2e"
TESTS_DIR = REPO_ROOT / "deploy" / "prometheus" / "tests"
TARGETS_DIR = REPO_ROOT / "deploy" / "prometheus" / "targets"
ALERTMANAGER = load_yaml("deploy/alertmanager/alertmanager.yml")
RUNBOOKS = REPO_ROOT / "docs" / "runbooks.md"
COMPOSE = load_yaml("docker-compose.yml")
ENV_EXAMPLE = REPO_ROOT / ".env.example"
SEVERITIES = {"page", "ticket", "info"}
ALERTS = sorted({rule["alert"] for _, rule in alert_rules()})
STACK = load_stack_module()  # deploy/local-stack/stack.py
# Dashboard uids (grafana/dashboards/); a link may pick the service dashboard's $service.
# Every dashboard_url must open a dashboard that is provisioned (the committed JSON).
DASHBOARD_UIDS = {
    json.loads(path.read_text(encoding="utf-8"))["uid"]
    for path in (REPO_ROOT / "grafana" / "dashboards").glob("*.json")
}
RUNBOOK_BASE = "{{ $externalLabels.exai_runbook_base_url }}"
GRAFANA_BASE = "{{ $externalLabels.exai_grafana_url }}"
LINK_LABELS = {
    "exai_runbook_base_url": "EXAI_RUNBOOK_BASE_URL",
    "exai_grafana_url": "EXAI_GRAFANA_URL",
}


def _rules_in(directory: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(directory.glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                yield path.name, rule


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
    # Not recursive: the e2e overlay in rules/e2e/ is never loaded by the shipped config.
    assert PROMETHEUS["rule_files"] == ["deploy/prometheus/rules/*.yml"]


def test_link_bases_come_from_the_environment_and_stay_out_of_alert_labels() -> None:
    external = PROMETHEUS["global"]["external_labels"]
    assert external == {label: f"${{{env}}}" for label, env in LINK_LABELS.items()}
    drops = [
        rc for rc in PROMETHEUS["alerting"]["alert_relabel_configs"] if rc["action"] == "labeldrop"
    ]
    assert any(all(re.fullmatch(rc["regex"], label) for label in LINK_LABELS) for rc in drops)


def test_relative_paths_of_prometheus_yml_are_under_deploy_prometheus() -> None:
    # The rules overlay (stack.prometheus_config) mirrors only deploy/prometheus/.
    paths = [*PROMETHEUS["rule_files"], *_sd_files()]
    assert all(p.startswith("deploy/prometheus/") for p in paths), paths


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


ALL_ALERT_RULES = [
    (f"{directory.name}/{name}", rule)
    for directory in (RULES_DIR, E2E_RULES_DIR)
    for name, rule in _rules_in(directory)
    if "alert" in rule
]


@pytest.mark.parametrize(("rule_file", "rule"), ALL_ALERT_RULES, ids=lambda x: str(x)[:40])
def test_alert_has_severity_and_absolute_links(rule_file: str, rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert {"summary", "description", "runbook_url", "dashboard_url"} <= set(annotations)
    assert annotations["runbook_url"] == f"{RUNBOOK_BASE}#{rule['alert'].lower()}"
    dashboard = re.fullmatch(
        re.escape(GRAFANA_BASE) + r"/d/([a-z-]+)(\?var-service=\{\{ \$labels\.service_name \}\})?",
        annotations["dashboard_url"],
    )
    assert dashboard, annotations["dashboard_url"]
    assert dashboard.group(1) in DASHBOARD_UIDS
    if dashboard.group(2):
        assert dashboard.group(1) == "exai-service"


def test_both_stacks_keep_the_30_days_the_slo_budget_needs() -> None:
    # The SLO dashboard's budget panels read 30-day ratios; Prometheus' default keeps 15.
    command = COMPOSE["services"]["prometheus"]["command"]
    time_flags = [c for c in command if c.startswith("--storage.tsdb.retention.time=")]
    size_flags = [c for c in command if c.startswith("--storage.tsdb.retention.size=")]
    assert time_flags == [f"--storage.tsdb.retention.time={STACK.PROMETHEUS_RETENTION_TIME}"]
    assert size_flags == [f"--storage.tsdb.retention.size={STACK.PROMETHEUS_RETENTION_SIZE}"]
    assert _duration_s(STACK.PROMETHEUS_RETENTION_TIME) >= 31 * 86400
    stack_source = (REPO_ROOT / "deploy/local-stack/stack.py").read_text(encoding="utf-8")
    assert '"--storage.tsdb.retention.time={PROMETHEUS_RETENTION_TIME}"' in stack_source
    assert '"--storage.tsdb.retention.size={PROMETHEUS_RETENTION_SIZE}"' in stack_source


def test_link_defaults_agree_across_compose_the_local_stack_and_env_example() -> None:
    compose_env = COMPOSE["services"]["prometheus"]["environment"]
    documented = ENV_EXAMPLE.read_text(encoding="utf-8")
    for env, default in STACK.ALERT_LINK_DEFAULTS.items():
        assert compose_env[env] == f"${{{env}:-{default}}}"
        assert f"# {env}={default}\n" in documented
        assert default.startswith(("http://", "https://"))


def _runbook_knobs() -> set[str]:
    return set(re.findall(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)`", RUNBOOKS.read_text("utf-8")))


def test_every_knob_the_runbooks_name_is_settable_in_compose_and_documented() -> None:
    knobs = _runbook_knobs()
    assert {"EXAI_RUNBOOK_BASE_URL", "EXAI_CIRCUIT_FAILURE_THRESHOLD"} <= knobs
    compose_text = "\n".join(
        line
        for line in (REPO_ROOT / "docker-compose.yml").read_text("utf-8").splitlines()
        if not line.lstrip().startswith("#")
    )
    settable = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose_text))
    documented = set(re.findall(r"(?m)^#?\s*([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text("utf-8")))
    assert not knobs - settable, f"not settable in docker-compose.yml: {sorted(knobs - settable)}"
    assert not knobs - documented, f"not in .env.example: {sorted(knobs - documented)}"


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


def _windows_s(expr: str) -> list[float]:
    return [_duration_s(w) for w in re.findall(r"\[(\d+[smhd])\]", expr)]


def _provider_alerts(directory: Path) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for _, rule in _rules_in(directory) if "alert" in rule}


def _recorded_windows(expr: str) -> list[float]:
    """Windows of the recording rules an alert uses (their names end in _rate<window>)."""
    return [_duration_s(w) for w in re.findall(r"exai:\w+:\w*rate(\d+[smhd])\b", expr)]


def test_shipped_provider_alerts_have_production_timings() -> None:
    rules = _provider_alerts(RULES_DIR)
    for name in ("ProviderErrorRatioHigh", "ProviderCircuitOpen"):
        rule = rules[name]
        windows = _windows_s(rule["expr"]) + _recorded_windows(rule["expr"])
        assert windows and min(windows) >= 120, (name, windows)
        assert _duration_s(rule["for"]) >= 120, name


def test_provider_error_ratio_has_a_traffic_floor() -> None:
    for directory in (RULES_DIR, E2E_RULES_DIR):
        expr = _provider_alerts(directory)["ProviderErrorRatioHigh"]["expr"]
        assert re.search(
            r"and on \(deployment_environment_name, gen_ai_provider_name\)\s+"
            r"exai:provider_requests:rate",
            expr,
        )


ENV = "deployment_environment_name"
_AGGREGATION = re.compile(
    r"\b(sum|min|max|avg|count|group|stddev|stdvar|topk|bottomk|quantile)\s*"
    r"(?:(by|without)\s*\(([^)]*)\))?\s*\("
)


def _environment_problems(expr: str) -> list[str]:
    """Parts of `expr` that merge environments: an aggregation without `by (… env …)`,
    a label-less `vector(…)`, a vector match `on (…)` that leaves env out (matching on
    service_instance_id is fine: a process runs in one environment)."""
    problems = []
    for match in _AGGREGATION.finditer(expr):
        keeps = match.group(2) == "by" and ENV in re.split(r"[\s,]+", match.group(3))
        if not keeps:
            problems.append(match.group(0))
    problems += re.findall(r"\bvector\s*\(", expr)
    problems += [
        match
        for match in re.findall(r"\bon\s*\([^)]*\)", expr)
        if not {ENV, "service_instance_id"} & set(re.split(r"[\s,()]+", match))
    ]
    return problems


def test_recording_rules_and_their_alerts_keep_the_environment() -> None:
    # Staging must never burn production's SLO or push its error ratio: every recorded
    # series is per deployment_environment_name, and so is every alert built on a
    # recorded aggregate (exai:instance:* is per process, not an aggregate).
    checked = 0
    for directory in (RULES_DIR, E2E_RULES_DIR):
        for name, rule in _rules_in(directory):
            aggregates = set(re.findall(r"\bexai:\w+:\w+", rule["expr"])) - {
                record for record in re.findall(r"\bexai:instance\w*:\w+", rule["expr"])
            }
            if "record" in rule or aggregates:
                problems = _environment_problems(rule["expr"])
                assert not problems, (name, rule.get("record") or rule.get("alert"), problems)
                checked += 1
    assert checked > 30


def test_environment_check_catches_what_merges_environments() -> None:
    assert _environment_problems("sum(rate(x[5m]))") == ["sum("]
    assert _environment_problems("sum by (service_name) (rate(x[5m])) or vector(0)") == [
        "sum by (service_name) (",
        "vector(",
    ]
    assert _environment_problems("a > on() max by (deployment_environment_name) (b)") == ["on()"]
    assert not _environment_problems(
        "sum by (deployment_environment_name, exai_slo_indicator) (rate(x[5m]))"
        " unless on (service_instance_id) exai:instance:stale"
    )


def test_shipped_alertmanager_timings_are_production_ones() -> None:
    route = ALERTMANAGER["route"]
    assert _duration_s(route["group_wait"]) >= 30
    assert _duration_s(route["group_interval"]) >= 300
    for child in route["routes"]:
        assert _duration_s(child.get("group_wait", route["group_wait"])) >= 10
        if child["receiver"] != "info":  # the Watchdog heartbeat repeats on purpose
            assert _duration_s(child.get("group_interval", route["group_interval"])) >= 300


def _without_timings(expr: str) -> str:
    """`expr` with every range window and recorded window (`…:ratio_rate5m`) blanked,
    and the window's length in seconds where a rate becomes a count (`rate5m * 300`)."""
    expr = re.sub(r"\[\d+[smhd]\]", "[W]", expr)
    expr = re.sub(r"(exai:\w+:\w*rate)\d+[smhd]\b", r"\1W", expr)
    return re.sub(r"(rateW \* )\d+\b", r"\1N", expr)


def test_e2e_overlay_replaces_only_shipped_files_and_changes_only_timings() -> None:
    # tests/e2e and tests/faults run the overlay; what they prove must hold for the
    # shipped rules: same alerts in the same order, same expressions but for windows,
    # same labels and links, `for` never longer; recording rules kept (an overlay may add
    # shorter-window variants of shipped ones).
    shipped_files = {p.name for p in RULES_DIR.glob("*.yml")}
    overlay_files = {p.name for p in E2E_RULES_DIR.glob("*.yml")}
    assert overlay_files and overlay_files <= shipped_files
    for name in overlay_files:
        shipped = [r for n, r in _rules_in(RULES_DIR) if n == name]
        overlay = [r for n, r in _rules_in(E2E_RULES_DIR) if n == name]
        shipped_alerts = [r for r in shipped if "alert" in r]
        overlay_alerts = [r for r in overlay if "alert" in r]
        assert [r["alert"] for r in overlay_alerts] == [r["alert"] for r in shipped_alerts], name
        for rule, twin in zip(overlay_alerts, shipped_alerts, strict=True):
            assert rule["labels"] == twin["labels"]
            for key in ("summary", "runbook_url", "dashboard_url"):
                assert rule["annotations"][key] == twin["annotations"][key], key
            assert _without_timings(rule["expr"]) == _without_timings(twin["expr"]), rule["alert"]
            assert _duration_s(rule.get("for", "0s")) <= _duration_s(twin.get("for", "0s"))
        shipped_records = {r["record"]: r["expr"] for r in shipped if "record" in r}
        overlay_records = {r["record"]: r["expr"] for r in overlay if "record" in r}
        for record, expr in shipped_records.items():
            assert overlay_records.get(record) == expr, record
        shapes = {_without_timings(f"{r} {e}") for r, e in shipped_records.items()}
        for record, expr in overlay_records.items():
            assert _without_timings(f"{record} {expr}") in shapes, record


def test_e2e_overlay_pages_within_two_minutes() -> None:
    # tests/e2e/test_stack.py forces provider 500s and waits for the webhook.
    rules = _provider_alerts(E2E_RULES_DIR)
    eval_s = _duration_s(PROMETHEUS["global"]["evaluation_interval"])
    for name in ("ProviderErrorRatioHigh", "ProviderCircuitOpen"):
        rule = rules[name]
        windows = _windows_s(rule["expr"]) + _recorded_windows(rule["expr"])
        assert windows and max(windows) <= 60, name
        assert eval_s + _duration_s(rule["for"]) + 30 <= 120, name


def test_e2e_stack_selects_the_overlay_and_short_alertmanager_timings() -> None:
    text = (REPO_ROOT / "tests/e2e/conftest.py").read_text(encoding="utf-8")
    overlay = re.search(r'"EXAI_PROMETHEUS_RULES_OVERLAY": "([^"]+)"', text)
    assert overlay and REPO_ROOT / overlay.group(1) == E2E_RULES_DIR
    assert '"EXAI_ALERTMANAGER_GROUP_INTERVAL": "30s"' in text


# ------------------------------------------------------------------ both variants, real tools


def test_rules_overlay_view_loads_overlay_rules_and_passes_promtool(tmp_path: Path) -> None:
    overrides = {"EXAI_PROMETHEUS_RULES_OVERLAY": "deploy/prometheus/rules/e2e"}
    config = STACK.prometheus_config(tmp_path, overrides)
    rules_dir = config.parent / "deploy" / "prometheus" / "rules"
    loaded = {p.name: p.resolve() for p in rules_dir.glob("*.yml")}
    assert loaded == {
        **{p.name: p for p in RULES_DIR.glob("*.yml")},
        **{p.name: p for p in E2E_RULES_DIR.glob("*.yml")},
    }
    result = run_tool("promtool", "check", "config", str(config))
    assert_ok(result)
    assert f"{len(loaded)} rule files found" in result.stdout
    assert_ok(run_tool("promtool", "check", "rules", *map(str, E2E_RULES_DIR.glob("*.yml"))))


def test_without_overrides_the_local_stack_runs_the_shipped_configs(tmp_path: Path) -> None:
    assert STACK.prometheus_config(tmp_path, {}) == REPO_ROOT / "prometheus.yml"
    shipped = REPO_ROOT / "deploy/alertmanager/alertmanager.yml"
    assert STACK.alertmanager_config(tmp_path, {}) == shipped


def test_e2e_alertmanager_timings_apply_to_every_route_and_pass_amtool(tmp_path: Path) -> None:
    overrides = {"EXAI_ALERTMANAGER_GROUP_WAIT": "5s", "EXAI_ALERTMANAGER_GROUP_INTERVAL": "30s"}
    path = STACK.alertmanager_config(tmp_path, overrides)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    routes = [config["route"], *config["route"]["routes"]]
    assert {(r["group_wait"], r["group_interval"]) for r in routes} == {("5s", "30s")}
    # Everything else is the shipped file.
    for key in ("receivers", "inhibit_rules", "global"):
        assert config[key] == ALERTMANAGER[key]
    result = run_tool("amtool", "check-config", str(path))
    assert_ok(result)
    assert "SUCCESS" in result.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _firing_alerts(url: str) -> list[dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{url}/api/v1/alerts", timeout=2) as response:
            alerts: list[dict[str, Any]] = json.load(response)["data"]["alerts"]
            return [a for a in alerts if a["state"] == "firing"]
    except OSError:
        return []


def test_real_prometheus_builds_the_links_from_its_environment(tmp_path: Path) -> None:
    # The shipped prometheus.yml and rules; only the environment differs. The Watchdog
    # fires at the first evaluation (no `for`), so its annotations show the expansion.
    port = _free_port()
    env = {
        **os.environ,
        "EXAI_RUNBOOK_BASE_URL": "https://wiki.example/sre/exai-runbooks",
        "EXAI_GRAFANA_URL": "https://grafana.example:8443",
    }
    log_path = tmp_path / "prometheus.log"
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [
                str(tool("prometheus")),
                f"--config.file={REPO_ROOT / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 60
        while not (alerts := _firing_alerts(f"http://127.0.0.1:{port}")):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no firing alert:\n{log_path.read_text(encoding='utf-8')[-3000:]}")
            time.sleep(0.5)
    finally:
        process.terminate()
        process.wait(timeout=20)
    watchdog = next(a for a in alerts if a["labels"]["alertname"] == "Watchdog")
    assert watchdog["annotations"]["runbook_url"] == (
        "https://wiki.example/sre/exai-runbooks#watchdog"
    )
    assert watchdog["annotations"]["dashboard_url"] == "https://grafana.example:8443/d/exai-slo"


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
