"""(e) SLOs and alerts: error-budget burn from the recording rules in
deploy/prometheus/rules/slo.yml, the alerts firing now, and Grafana's alert list.

Availability SLO 99.9 % (error budget 0.001), latency SLO 99 % within 5 s (budget 0.01).
A burn rate of 1 spends the 30-day budget in exactly 30 days; the page thresholds are
14.4 (1 h and 5 m windows) and 6 (6 h and 30 m).
"""

from __future__ import annotations

from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel

from exai_dashboards.common import base, with_rows
from exai_dashboards.panels import (
    alert_list_panel,
    prom,
    stat_panel,
    state_timeline_panel,
    timeseries_panel,
)

WINDOWS = ("5m", "30m", "1h", "6h")
BURN_STEPS = ((None, "green"), (6.0, "orange"), (14.4, "red"))
FIRING = 'ALERTS{alertstate="firing"}'


def _burn(record: str, budget: float, title: str, what: str) -> list[Builder[Panel]]:
    return [
        timeseries_panel(
            f"{title}: burn rate",
            f"How fast {what} spends its 30-day error budget (1 = exactly on budget); pages"
            " at 14.4 over 1 h and 5 m, or 6 over 6 h and 30 m.",
            [
                prom(f"{record}{window} / {budget}", window, ref="ABCD"[index])
                for index, window in enumerate(WINDOWS)
            ],
            steps=BURN_STEPS,
            span=16,
        ),
        stat_panel(
            f"{title}: budget left (3 d)",
            f"Share of the error budget {what} has not spent over the last 3 days.",
            prom(f"1 - {record}3d / {budget}", "budget left"),
            unit="percentunit",
            steps=((None, "red"), (0.25, "orange"), (0.5, "green")),
            decimals=1,
            span=8,
            height=8,
        ),
    ]


def slo_dashboard() -> Dashboard:
    availability = _burn(
        "exai:gateway_call_errors:ratio_rate", 0.001, "Availability (99.9 %)", "gateway failure"
    )
    latency = _burn(
        "exai:gateway_call_slow:ratio_rate", 0.01, "Latency (99 % within 5 s)", "gateway slowness"
    )
    alerts = [
        stat_panel(
            "Alerts firing",
            "Prometheus alerts firing now; 0 when none is.",
            prom(f"count({FIRING}) or vector(0)", "firing"),
            steps=((None, "green"), (1, "red")),
            span=6,
            height=8,
        ),
        stat_panel(
            "Pages firing",
            "Firing alerts with severity=page; 0 when none is.",
            prom('count(ALERTS{alertstate="firing", severity="page"}) or vector(0)', "pages"),
            steps=((None, "green"), (1, "red")),
            span=6,
            height=8,
        ),
        state_timeline_panel(
            "Alerts over time",
            "When each alert was firing (red); empty while nothing fires.",
            prom(
                f"max by (alertname, severity) ({FIRING})",
                "{{alertname}} ({{severity}})",
            ),
            {"1": ("firing", "red")},
        ),
        alert_list_panel(
            "Alert rules firing or pending",
            "The Prometheus rules (deploy/prometheus/rules/) firing or pending now, with their"
            " labels; runbook and dashboard links are in each alert's annotations.",
        ),
    ]
    return with_rows(
        base(
            "exai-slo",
            "EXAI SLOs and alerts",
            "Gateway availability and latency SLOs: error-budget burn; alerts firing now.",
        ),
        [
            ("Availability SLO", availability),
            ("Latency SLO", latency),
            ("Alerts", alerts),
        ],
    )
