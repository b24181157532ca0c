"""The canary row of the overview: what exai-canary (services/exai_canary) sees when it
calls the gateway like a user's client, every 15 s, whatever real traffic does.

Its series (services/exai_canary/telemetry.py): ``exai_canary_checks_total`` by
``exai_canary_check`` (status | chat) and ``exai_outcome`` (ok | error), created at 0 at
start-up; ``exai_canary_check_duration_seconds_*``; ``exai_canary_last_success_seconds``
(Unix time of the last ok check, absent until the first one). The pages CanaryFailing
and CanarySilent (deploy/prometheus/rules/canary.yml) read the same counter.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat, timeseries

from exai_dashboards.panels import prom, stat_panel, timeseries_panel
from exai_dashboards.promql import ENV, quantile, rate_sum, ratio, sel

CHECKS = "exai_canary_checks_total"
DURATION = "exai_canary_check_duration_seconds"
LAST_SUCCESS = "exai_canary_last_success_seconds"
STATUS = 'exai_canary_check="status"'


def canary_panels() -> list[stat.Panel | timeseries.Panel]:
    return [
        stat_panel(
            "Canary: since the last ok status check",
            "Seconds since exai-canary's last successful `status` call to the gateway (one"
            " every 15 s). Mostly failing checks page within ~2 minutes (CanaryFailing);"
            " No data: no success since the canary started, or it reports nothing"
            " (CanarySilent).",
            prom(f"time() - max({LAST_SUCCESS}{sel(STATUS, ENV)})", "since last ok"),
            unit="s",
            steps=((None, "green"), (45, "orange"), (120, "red")),
            decimals=0,
            no_value="no ok check seen",
        ),
        stat_panel(
            "Canary: status checks ok (15 min)",
            "Share of exai-canary's `status` checks that succeeded over 15 minutes.",
            prom(
                "1 - (\n"
                + ratio(CHECKS, ['exai_outcome="error"'], [STATUS, ENV], window="15m")
                + "\n)",
                "ok",
            ),
            unit="percentunit",
            steps=((None, "red"), (0.9, "orange"), (0.99, "green")),
            decimals=1,
            no_value="no checks",
            nan="no checks",
        ),
        timeseries_panel(
            "Canary checks per minute by outcome",
            "exai-canary's checks per minute by check (status | chat, the latter only when"
            " EXAI_CANARY_CHAT_MODEL is set) and outcome (ok | error). Why one failed is on"
            " its span (error.type) and in the canary's log.",
            [
                prom(
                    f"60 * {rate_sum(CHECKS, ENV, labels=['exai_canary_check', 'exai_outcome'])}",
                    "{{exai_canary_check}} {{exai_outcome}}",
                )
            ],
            unit="short",
        ),
        timeseries_panel(
            "Canary check duration p95",
            "95th percentile of a check: connect, hello, tool call, answer (a chat includes"
            " the model's answer time).",
            [
                prom(
                    quantile(0.95, f"{DURATION}_bucket", ENV, labels=["exai_canary_check"]),
                    "{{exai_canary_check}}",
                )
            ],
            unit="s",
        ),
    ]
