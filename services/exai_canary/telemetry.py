"""The canary's metrics and span names.

Prometheus names (prometheus.yml, UnderscoreEscapingWithSuffixes), which the alerts in
deploy/prometheus/rules/canary.yml and the overview dashboard's canary row use:

- ``exai.canary.checks`` → ``exai_canary_checks_total{exai_canary_check, exai_outcome}``:
  one per finished check; created at 0 for every enabled check and outcome at start-up,
  so the first failure after a restart is a rate, not a new series ``rate()`` misses;
- ``exai.canary.check.duration`` → ``exai_canary_check_duration_seconds_*``;
- ``exai.canary.last_success`` → ``exai_canary_last_success_seconds{exai_canary_check}``:
  Unix time of the check's last success, reported only once there has been one since
  the process started (a fresh canary has no "last success" to claim).

Labels are bounded: the check is ``status`` or ``chat``, the outcome ``ok`` or ``error``.
Why a check failed (``error.type``) is on its span and in the log, not on the metrics.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, Literal

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from exai_telemetry import names

CheckName = Literal["status", "chat"]
CheckOutcome = Literal["ok", "error"]
OUTCOMES: Final[tuple[CheckOutcome, ...]] = ("ok", "error")

INSTRUMENTATION_NAME: Final = "exai_canary"
CHECK: Final = "exai.canary.check"  # attribute: status | chat
# On the check's span: the trace the gateway started for the call (its own root), so the
# canary's span leads to it; the correlation ID links both as well.
GATEWAY_TRACE_ID: Final = "exai.canary.gateway_trace_id"

M_CHECKS: Final = "exai.canary.checks"
M_CHECK_DURATION: Final = "exai.canary.check.duration"
M_LAST_SUCCESS: Final = "exai.canary.last_success"


def span_name(check: CheckName) -> str:
    return f"canary {check}"


class CanaryMetrics:
    def __init__(
        self, meter: Meter, checks: Iterable[CheckName], last_success: Mapping[str, float]
    ) -> None:
        """`last_success` (check → Unix time) is read at each collection."""
        self._last_success = last_success
        self._checks = meter.create_counter(
            M_CHECKS, unit="{check}", description="Synthetic checks of the gateway, by outcome"
        )
        self._duration = meter.create_histogram(
            M_CHECK_DURATION,
            unit="s",
            description="Duration of a synthetic check: connect, hello, call, answer",
        )
        meter.create_observable_gauge(
            M_LAST_SUCCESS,
            callbacks=[self._observe_last_success],
            unit="s",
            description="Unix time of the check's last success since the canary started",
        )
        for check in checks:
            for outcome in OUTCOMES:
                self._checks.add(0, self._labels(check, outcome))

    @staticmethod
    def _labels(check: CheckName, outcome: CheckOutcome) -> dict[str, str]:
        return {CHECK: check, names.OUTCOME: outcome}

    def finished(self, check: CheckName, outcome: CheckOutcome, duration_s: float) -> None:
        labels = self._labels(check, outcome)
        self._checks.add(1, labels)
        self._duration.record(duration_s, labels)

    def _observe_last_success(self, _options: CallbackOptions) -> Iterable[Observation]:
        for check, at in list(self._last_success.items()):
            yield Observation(at, {CHECK: check})
