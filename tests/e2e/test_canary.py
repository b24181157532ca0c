"""The canary in the running stack: a stopped gateway pages through the real pipeline
(canary → collector → Prometheus rules → Alertmanager → webhook) within about two
minutes, on an otherwise idle system, and the page resolves once the gateway is back.

Runs against the e2e rules overlay (deploy/prometheus/rules/e2e/canary.yml: 1-minute
windows, `for` 30 s); the production rules take about a minute longer (2-minute window).
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.e2e.helpers import AlertWebhook, Jaeger, Prometheus, eventually, span_tags
from tests.support.stack import RunningStack

pytestmark = pytest.mark.e2e

STATUS_OK = 'sum(exai_canary_checks_total{exai_canary_check="status", exai_outcome="ok"})'
STATUS_ERRORS = 'sum(exai_canary_checks_total{exai_canary_check="status", exai_outcome="error"})'
FIRE_TIMEOUT_S = 240.0
RESOLVE_TIMEOUT_S = 240.0


def test_canary_reports_under_the_names_the_rules_and_dashboards_use(
    stack: RunningStack, prometheus: Prometheus
) -> None:
    eventually(lambda: (prometheus.scalar(STATUS_OK) or 0) >= 1, timeout_s=60)
    for name in (
        "exai_canary_checks_total",
        "exai_canary_check_duration_seconds_bucket",
        "exai_canary_last_success_seconds",
    ):
        rows = prometheus.query(f'{name}{{service_name="exai-canary"}}')
        assert rows, name
        assert {r["metric"]["exai_canary_check"] for r in rows} == {"status"}  # no chat
        assert {r["metric"]["deployment_environment_name"] for r in rows} == {"e2e"}
    # Created at 0 at start-up: the first failure is a rate, not a new series.
    assert prometheus.query(
        'exai_canary_checks_total{exai_canary_check="status", exai_outcome="error"}'
    )
    age = prometheus.scalar(
        'time() - max(exai_canary_last_success_seconds{exai_canary_check="status"})'
    )
    assert age is not None and age < 60


def test_a_stopped_gateway_pages_canary_failing_and_resolves_when_it_is_back(
    stack: RunningStack,
    prometheus: Prometheus,
    webhook: AlertWebhook,
    jaeger: Jaeger,
    capsys: pytest.CaptureFixture[str],
) -> None:
    eventually(lambda: (prometheus.scalar(STATUS_OK) or 0) >= 1, timeout_s=60)
    errors_before = prometheus.scalar(STATUS_ERRORS) or 0.0
    names = {"CanaryFailing", "CanarySilent"}
    stopped_at = time.monotonic()
    stack.kill("ws-gateway", signal.SIGTERM)
    try:
        firing = eventually(
            lambda: webhook.alerts("firing", stopped_at, names), timeout_s=FIRE_TIMEOUT_S
        )
        fired_after = firing[0][0] - stopped_at
        alerts = [alert for _, alert in firing]
        assert {a["labels"]["alertname"] for a in alerts} == {"CanaryFailing"}, alerts
        (alert,) = alerts
        assert alert["labels"]["severity"] == "page"
        assert alert["labels"]["exai_canary_check"] == "status"
        assert alert["labels"]["service_name"] == "exai-canary"
        assert alert["labels"]["deployment_environment_name"] == "e2e"
        annotations = alert["annotations"]
        assert (
            annotations["runbook_url"]
            == "https://runbooks.e2e.example/exai/runbooks.md#canaryfailing"
        )
        assert annotations["dashboard_url"] == "http://grafana.e2e.example:3000/d/exai-overview"
        # The canary stays up and keeps reporting its failed checks: not silent.
        eventually(
            lambda: (prometheus.scalar(STATUS_ERRORS) or 0) >= errors_before + 4, timeout_s=90
        )
        assert not [a for a in prometheus.alerts() if a["labels"]["alertname"] == "CanarySilent"]
        # One log line per change of state, not one per failed check.
        failing_lines = [
            line for line in stack.log("canary").splitlines() if "check failing" in line
        ]
        assert 1 <= len(failing_lines) <= 3, failing_lines
        assert any("connect" in line for line in failing_lines), failing_lines

        # A failed check's trace is kept whatever the sampling share: it names the reason.
        def failed_canary_spans() -> list[dict[str, object]]:
            return [
                span_tags(span)
                for trace in jaeger.all_traces("exai-canary")
                for span in trace["spans"]
                if span_tags(span).get("error.type") == "connect"
            ]

        (tags, *_) = eventually(failed_canary_spans, timeout_s=60)
        assert str(tags["exai.correlation_id"]).startswith("canary-")
        assert tags["exai.canary.check"] == "status"
    finally:
        restarted_at = time.monotonic()
        stack.restart("ws-gateway")
    resolved = eventually(
        lambda: [
            t
            for t, a in webhook.alerts("resolved", restarted_at, {"CanaryFailing"})
            if a["labels"].get("exai_canary_check") == "status"
        ],
        timeout_s=RESOLVE_TIMEOUT_S,
    )
    resolved_after = resolved[0] - restarted_at
    assert any("ok again" in line for line in stack.log("canary").splitlines())
    with capsys.disabled():
        print(
            f"\n[e2e] gateway stopped → CanaryFailing at the webhook: {fired_after:.0f}s; "
            f"gateway back → resolved: {resolved_after:.0f}s"
        )
