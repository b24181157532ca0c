"""Metric names and PromQL building blocks shared by every dashboard.

Names are what Prometheus stores (prometheus.yml `otlp:` with
UnderscoreEscapingWithSuffixes; the collector's own metrics scraped from :8888):

- span metrics from ALL spans, before tail sampling (exact counts, no exemplars):
  ``traces_spanmetrics_calls_total``, ``traces_spanmetrics_latency_bucket``;
- span metrics from the KEPT spans, after tail sampling, carrying the exemplars (each
  one points at a stored trace): ``traces_spanmetrics_kept_*``;
- the services' own instruments (``exai_*``, ``gen_ai_*``, ``http_*``) and the recording
  rules in deploy/prometheus/rules/.

The one mistake every ratio here avoids: ``errors / all`` has no series at all while
nothing fails, and the panel says "No data" exactly when the system is healthy.
:func:`ratio` adds a zero for every group of the denominator.
"""

from __future__ import annotations

from collections.abc import Sequence

RATE = "$__rate_interval"

CALLS = "traces_spanmetrics_calls_total"
LATENCY = "traces_spanmetrics_latency_bucket"
KEPT_CALLS = "traces_spanmetrics_kept_calls_total"
KEPT_LATENCY = "traces_spanmetrics_kept_latency_bucket"

SERVER = 'span_kind="SPAN_KIND_SERVER"'
# Every panel follows the dashboard's `$env` variable (deployment.environment.name); the
# All value is `.*`, which also matches series without the label.
ENV = 'deployment_environment_name=~"$env"'
CLIENT = 'span_kind="SPAN_KIND_CLIENT"'
ERROR = 'status_code="STATUS_CODE_ERROR"'

# Client spans of the storage adapter's stores, told apart by the span-metrics dimension
# db_system_name (db.system.name: the redis and SQLAlchemy instrumentations set it with the
# stable database semconv, the Supabase REST store sets "supabase" on its HTTP spans). The
# span names cannot tell them apart: the REST store's spans are named GET/POST, like Redis
# commands and every other HTTP call.
REDIS = 'db_system_name="redis"'
DURABLE_SYSTEMS = "postgresql|supabase|sqlite"
DURABLE = f'db_system_name=~"{DURABLE_SYSTEMS}"'
STORE_SPANS = 'db_system_name!=""'
STORE_SERVICE = 'service_name="storage-adapter"'


# Instances that stopped exporting (deploy/prometheus/rules/instances.yml): their last
# gauge samples stay visible for Prometheus' 5-minute lookback, because pushed series get
# no staleness marker when the process dies.
STALE_INSTANCES = "exai:instance:stale"


def live(expr: str) -> str:
    """`expr` (gauge series carrying service_instance_id) without the series of instances
    that stopped exporting: after a restart, sum() counts the new process only. `unless`,
    not `and` on live instances: a series from a process without the SDK's liveness metric
    is kept rather than hidden."""
    return f"({expr} unless on (service_instance_id) {STALE_INSTANCES})"


def sel(*matchers: str) -> str:
    """A label selector from matchers, skipping empty ones: ``{a="1", b="2"}``."""
    return "{" + ", ".join(m for m in matchers if m) + "}"


def by(labels: Sequence[str]) -> str:
    return f" by ({', '.join(labels)})" if labels else ""


def rate_sum(metric: str, *matchers: str, labels: Sequence[str] = (), window: str = RATE) -> str:
    """``sum by (labels) (rate(metric{matchers}[window]))``."""
    return f"sum{by(labels)} (rate({metric}{sel(*matchers)}[{window}]))"


def rate_sum_or_zero(
    metric: str,
    matchers: Sequence[str],
    *,
    zero_from: str,
    zero_matchers: Sequence[str] = (),
    labels: Sequence[str] = (),
    window: str = RATE,
) -> str:
    """A rate of something that may never have happened (errors, retries, refusals):
    the counter's series is missing until the first event, so every group that
    `zero_from` (a counter that always exists) has gets a 0 instead of No data."""
    return (
        f"{rate_sum(metric, *matchers, labels=labels, window=window)}\nor\n"
        f"{rate_sum(zero_from, *zero_matchers, labels=labels, window=window)} * 0"
    )


def ratio(
    metric: str,
    bad: Sequence[str],
    all_: Sequence[str] = (),
    *,
    labels: Sequence[str] = (),
    window: str = RATE,
) -> str:
    """Share of `metric` matching `bad` among `all_`, 0 (not No data) when none is bad."""
    numerator = rate_sum(metric, *all_, *bad, labels=labels, window=window)
    denominator = rate_sum(metric, *all_, labels=labels, window=window)
    return f"(\n  {numerator}\n  or\n  {denominator} * 0\n)\n/\n{denominator}"


def quantile(
    q: float,
    bucket: str,
    *matchers: str,
    labels: Sequence[str] = (),
    window: str = RATE,
) -> str:
    """``histogram_quantile(q, sum by (labels, le) (rate(bucket{…}[window])))``."""
    return (
        f"histogram_quantile({q}, sum{by([*labels, 'le'])} "
        f"(rate({bucket}{sel(*matchers)}[{window}])))"
    )


def mean(metric_base: str, *matchers: str, labels: Sequence[str] = (), window: str = RATE) -> str:
    """Average from a histogram's _sum and _count: ``rate(sum) / rate(count)``."""
    return (
        f"{rate_sum(metric_base + '_sum', *matchers, labels=labels, window=window)}\n/\n"
        f"{rate_sum(metric_base + '_count', *matchers, labels=labels, window=window)}"
    )
