"""(e) SLOs and alerts: error-budget burn from the recording rules in
deploy/prometheus/rules/slo.yml, the 30-day budget left, the two latency indicators'
histograms, the alerts firing now, and Grafana's alert list.

Objectives (slo.yml): availability 99.9 % (error budget 0.001); first chunk 99 % of
successful streamed calls within their tool's threshold (budget 0.01); gateway+proxy
overhead 99 % of successful calls within their tool's threshold (budget 0.01). A burn
rate of 1 spends the 30-day budget in exactly 30 days; the alerts page at 14.4 (1 h and
5 m windows) or 6 (6 h and 30 m) and open a ticket at 3 (1 d and 2 h) or 1 (3 d and 6 h):
those four levels are drawn on every burn-rate panel.

Every SLO panel follows `$env` (deployment.environment.name): each environment has its
own budget, as in the recording rules.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models.common import GraphThresholdsStyleMode
from grafana_foundation_sdk.models.dashboard import Dashboard, Panel

from exai_dashboards.common import base, with_rows
from exai_dashboards.panels import (
    NO_TRAFFIC,
    alert_list_panel,
    env_variable,
    prom,
    stat_panel,
    state_timeline_panel,
    timeseries_panel,
)
from exai_dashboards.promql import ENV, quantile, ratio, sel

WINDOWS = ("5m", "30m", "1h", "6h")
# The burn rates the alerts act on, drawn as lines: ticket at 1 and 3, page at 6 and 14.4.
BURN_STEPS = (
    (None, "green"),
    (1.0, "yellow"),
    (3.0, "orange"),
    (6.0, "dark-orange"),
    (14.4, "red"),
)
BUDGET_DAYS = "30d"
# Heartbeat and informational alerts (the Watchdog fires all the time, by design) are no
# problem to look at: the firing counts leave out severity="info".
NOT_INFO = 'severity!="info"'
FIRING = f'ALERTS{{alertstate="firing", {NOT_INFO}}}'
FIRST_CHUNK = 'exai_slo_indicator="first_chunk"'
OVERHEAD = 'exai_slo_indicator="overhead"'
OBJECTIVE = "exai_gateway_latency_objective_total"
TTFC = "exai_gateway_time_to_first_chunk_seconds_bucket"
OVERHEAD_BUCKET = "exai_gateway_overhead_duration_seconds_bucket"
BY_ENV = ["deployment_environment_name"]
BY_TOOL = ["deployment_environment_name", "exai_tool"]


def _burn_rate(
    name: str, record: str, matchers: tuple[str, ...], budget: float, what: str
) -> Builder[Panel]:
    return timeseries_panel(
        f"{name}: burn rate",
        f"How fast {what} spends the 30-day error budget (1 = exactly on budget). The lines"
        " are the alerts' thresholds: ticket above 3 (1 d and 2 h) or 1 (3 d and 6 h), page"
        " above 14.4 (1 h and 5 m) or 6 (6 h and 30 m). A gap is a window without calls.",
        [
            prom(
                f"{record}{window}{sel(ENV, *matchers)} / {budget}",
                f"{{{{deployment_environment_name}}}} {window}",
                ref="ABCD"[index],
            )
            for index, window in enumerate(WINDOWS)
        ],
        steps=BURN_STEPS,
        span=12,
        no_value=NO_TRAFFIC,
        nan=NO_TRAFFIC,
    ).thresholds_style(common.GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.LINE))


def _budget(
    name: str, record: str, matchers: tuple[str, ...], budget: float, what: str
) -> list[Builder[Panel]]:
    """Budget left and spent over 30 days, from the 30-day recorded ratio. `>= 0` drops
    the 0/0 of a month without calls, which then shows the whole budget left (nothing was
    spent) instead of NaN; left is clamped at 0 and says "exhausted", spent says how far
    over it went."""
    spent = f"({record}{BUDGET_DAYS}{sel(ENV, *matchers)} >= 0) / {budget}"
    return [
        stat_panel(
            f"{name}: budget left (30 d)",
            f"Share of the 30-day error budget {what} has not spent: 1 - bad / allowed over"
            ' the last 30 days (or since Prometheus has data). "exhausted" once it is all'
            " spent; budget spent says by how much. 100 % when there was no call.",
            prom(
                f"clamp_min(1 - {spent}, 0)\nor on ()\nvector(1)", "{{deployment_environment_name}}"
            ),
            unit="percentunit",
            steps=((None, "red"), (0.25, "orange"), (0.5, "green")),
            values={"0": ("exhausted", "red")},
            decimals=1,
            span=6,
            height=8,
        ),
        stat_panel(
            f"{name}: budget spent (30 d)",
            f"Bad events over the last 30 days as a share of those the objective allows: above"
            f" 100 % the objective is missed ({what}; 250 % = spent two and a half times).",
            prom(f"{spent}\nor on ()\nvector(0)", "{{deployment_environment_name}}"),
            unit="percentunit",
            steps=((None, "green"), (0.75, "orange"), (1.0, "red")),
            decimals=1,
            span=6,
            height=8,
        ),
    ]


def _missed(name: str, indicator: str, what: str) -> Builder[Panel]:
    return timeseries_panel(
        f"{name}: share missed",
        f"Share of {what} that missed their tool's threshold: per tool, and the 1 h ratio the"
        " alerts use; 0 while every call is within it.",
        [
            prom(
                ratio(OBJECTIVE, ['exai_slo_result="missed"'], [ENV, indicator], labels=BY_TOOL),
                "{{deployment_environment_name}} {{exai_tool}}",
            ),
            prom(
                f"exai:gateway_latency_objective_missed:ratio_rate1h{sel(ENV, indicator)}",
                "{{deployment_environment_name}} all tools (1 h)",
                ref="B",
            ),
        ],
        unit="percentunit",
        span=12,
        no_value=NO_TRAFFIC,
    )


def _percentiles(
    title: str, bucket: str, matchers: tuple[str, ...], description: str
) -> Builder[Panel]:
    return timeseries_panel(
        title,
        description + " p50 and p99 over all tools, p95 per tool.",
        [
            prom(
                quantile(0.5, bucket, ENV, *matchers, labels=BY_ENV),
                "{{deployment_environment_name}} p50",
            ),
            prom(
                quantile(0.99, bucket, ENV, *matchers, labels=BY_ENV),
                "{{deployment_environment_name}} p99",
                ref="B",
            ),
            prom(
                quantile(0.95, bucket, ENV, *matchers, labels=BY_TOOL),
                "{{deployment_environment_name}} {{exai_tool}} p95",
                ref="C",
            ),
        ],
        unit="s",
        span=12,
        no_value=NO_TRAFFIC,
    )


def slo_dashboard() -> Dashboard:
    errors = "exai:gateway_call_errors:ratio_rate"
    latency = "exai:gateway_latency_objective_missed:ratio_rate"
    availability = [
        _burn_rate("Availability", errors, (), 0.001, "gateway failure"),
        *_budget("Availability", errors, (), 0.001, "gateway failure"),
    ]
    first_chunk = [
        _missed("First chunk", FIRST_CHUNK, "successful streamed calls"),
        _burn_rate("First chunk", latency, (FIRST_CHUNK,), 0.01, "a late first chunk"),
        *_budget("First chunk", latency, (FIRST_CHUNK,), 0.01, "a late first chunk"),
        _percentiles(
            "Time to first chunk",
            TTFC,
            (),
            "Time from a streamed call's start at the gateway to the first chunk sent to the"
            " client (exai.gateway.time_to_first_chunk).",
        ),
    ]
    overhead = [
        _missed("Overhead", OVERHEAD, "successful calls"),
        _burn_rate("Overhead", latency, (OVERHEAD,), 0.01, "gateway+proxy overhead"),
        *_budget("Overhead", latency, (OVERHEAD,), 0.01, "gateway+proxy overhead"),
        _percentiles(
            "Gateway+proxy overhead",
            OVERHEAD_BUCKET,
            ('exai_outcome="ok"',),
            "A successful call's time in the gateway and provider-proxy themselves: its"
            " duration minus the time waiting on the provider's API"
            " (exai.gateway.overhead.duration).",
        ),
    ]
    alerts = [
        stat_panel(
            "Alerts firing",
            "Prometheus alerts firing now, pages and tickets (the always-firing Watchdog"
            " heartbeat and other severity=info alerts are left out); 0 when none is.",
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
            "When each page or ticket was firing (red); empty while nothing fires. The"
            " Watchdog heartbeat is left out.",
            prom(
                f"max by (alertname, severity, deployment_environment_name) ({FIRING})",
                "{{alertname}} {{deployment_environment_name}} ({{severity}})",
            ),
            {"1": ("firing", "red")},
        ),
        alert_list_panel(
            "Alert rules firing or pending",
            "The Prometheus rules (deploy/prometheus/rules/) firing or pending now, with their"
            " labels (severity=info heartbeats left out); runbook and dashboard links are in"
            " each alert's annotations.",
            label_filter=f"{{{NOT_INFO}}}",
        ),
    ]
    return with_rows(
        base(
            "exai-slo",
            "EXAI SLOs and alerts",
            "Gateway SLOs per environment (availability, first chunk, gateway+proxy overhead):"
            " burn rates, the 30-day error budget; alerts firing now.",
        ).with_variable(
            env_variable("label_values(exai_gateway_calls_total, deployment_environment_name)")
        ),
        [
            ("Availability SLO: 99.9 % of calls succeed", availability),
            ("First-chunk SLO: 99 % of streams start within their tool's threshold", first_chunk),
            ("Overhead SLO: 99 % of calls within their tool's gateway+proxy threshold", overhead),
            ("Alerts", alerts),
        ],
    )
