"""Shared helpers for the config tests (tests/unit/test_config_*.py).

The telemetry tools (otelcol, promtool, amtool, alertmanager, …) and the Docker Compose
CLI plugin (docker-compose) are built from Go modules by deploy/local-stack/build-tools.sh
into a cache outside the repo. A test that needs one asks :func:`tool`:

- an explicit ``EXAI_<NAME>_BIN`` environment variable wins (``-`` becomes ``_``:
  ``EXAI_DOCKER_COMPOSE_BIN``);
- a tool already built is used as is;
- a missing tool is built when ``CI=true`` (a build failure fails the test) and skips
  the test otherwise — building takes minutes; run ``make tools`` first.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_TOOLS = REPO_ROOT / "deploy" / "local-stack" / "build-tools.sh"
VERSIONS_ENV = REPO_ROOT / "deploy" / "local-stack" / "tools" / "versions.env"

# binary -> tool directory name used by build-tools.sh
TOOL_OF_BINARY = {
    "otelcol": "otelcol",
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "alertmanager": "alertmanager",
    "amtool": "alertmanager",
    "jaeger": "jaeger",
    "docker-compose": "compose",
    "docker-buildx": "buildx",
}

# What the no-Docker stack sets for the collector (everything else keeps the compose
# defaults in otel-collector.yaml).
LOCAL_COLLECTOR_ENV = {
    "EXAI_OTELCOL_HOST": "127.0.0.1",
    "EXAI_TRACES_ENDPOINT": "127.0.0.1:14317",
    "EXAI_PROMETHEUS_OTLP_ENDPOINT": "http://127.0.0.1:9090/api/v1/otlp",
    "EXAI_TRACE_SAMPLE_PERCENT": "10",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def load_yaml(relative: str) -> Any:
    return yaml.safe_load((REPO_ROOT / relative).read_text(encoding="utf-8"))


def versions() -> dict[str, str]:
    """deploy/local-stack/tools/versions.env as a dict (KEY=VALUE lines)."""
    result: dict[str, str] = {}
    for line in VERSIONS_ENV.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            result[key.strip()] = value.strip().strip("'\"")
    return result


@functools.cache
def _listed_tools() -> dict[str, tuple[str, Path]]:
    """build-tools.sh list: tool -> (status, directory). Builds nothing."""
    if not BUILD_TOOLS.exists():
        return {}
    out = subprocess.run(
        ["bash", str(BUILD_TOOLS), "list"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    tools: dict[str, tuple[str, Path]] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            name, _version, status, directory = parts
            tools[name] = (status, Path(directory))
    return tools


@functools.cache
def _built_path(binary: str) -> Path:
    """build-tools.sh path BINARY: builds the tool if it is missing (CI only)."""
    result = subprocess.run(
        ["bash", str(BUILD_TOOLS), "path", binary],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"building {binary} failed:\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def tool(binary: str) -> Path:
    """The path of a tool binary; skips (or fails in CI) when it is missing."""
    override = os.environ.get(f"EXAI_{binary.upper().replace('-', '_')}_BIN")
    if override:
        return Path(override)
    if not BUILD_TOOLS.exists():
        if in_ci():
            pytest.fail(f"{BUILD_TOOLS} is missing: cannot provide {binary}")
        pytest.skip(f"{BUILD_TOOLS} is missing")
    status, directory = _listed_tools().get(TOOL_OF_BINARY[binary], ("missing", Path()))
    if status == "present":
        return directory / binary
    if in_ci():
        return _built_path(binary)
    pytest.skip(f"{binary} is not built yet (run `make tools` or {BUILD_TOOLS.name} build)")


def run_tool(
    binary: str, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a tool from the repo root; the result is returned whatever the exit code."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(tool(binary)), *args],
        cwd=REPO_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (
        f"{' '.join(result.args)} exited {result.returncode}\n"
        f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
    )


# ------------------------------------------------------------------ rules and metrics


def alert_rules() -> Iterator[tuple[str, dict[str, Any]]]:
    """(rule file, rule) for every alerting rule in deploy/prometheus/rules/."""
    for path in sorted((REPO_ROOT / "deploy" / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    yield path.name, rule


def recording_rule_names() -> set[str]:
    names: set[str] = set()
    for path in (REPO_ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            names.update(rule["record"] for rule in group["rules"] if "record" in rule)
    return names


# Series names as Prometheus stores them, checked against the real binaries (Prometheus
# 3.16 OTLP receiver with UnderscoreEscapingWithSuffixes, collector 0.161 self-metrics
# scraped from :8888) by pushing every EXAI instrument through the collector.
# Rules and dashboards may only use these (plus recording rules and `up`).
KNOWN_METRICS = frozenset(
    {
        # the services' own instruments (exai_telemetry.names and the GenAI semconv ones)
        "exai_gateway_calls_total",
        "exai_gateway_call_duration_seconds_bucket",
        "exai_gateway_call_duration_seconds_count",
        "exai_gateway_call_duration_seconds_sum",
        "exai_gateway_connections",
        "exai_gateway_inflight",
        "exai_provider_tokens_total",
        "exai_provider_cost_total",
        "exai_provider_cost_budget",
        "exai_provider_retries_total",
        "exai_provider_requests_total",
        # gauges with annotation units ({state}, {status}) keep their plain names
        "exai_provider_circuit_state",
        "exai_storage_dependency_up",
        "exai_storage_cache_lookups_total",
        "exai_storage_durable_errors_total",
        # latency the gateway controls
        "exai_gateway_time_to_first_chunk_seconds_bucket",
        "exai_gateway_time_to_first_chunk_seconds_count",
        "exai_gateway_time_to_first_chunk_seconds_sum",
        "exai_gateway_overhead_duration_seconds_bucket",
        "exai_gateway_overhead_duration_seconds_count",
        "exai_gateway_overhead_duration_seconds_sum",
        "exai_gateway_latency_objective_total",
        # every service's process (opentelemetry-instrumentation-system-metrics); more
        # of them below, with the dashboards' instruments
        "process_cpu_utilization_ratio",
        "process_memory_virtual_bytes",
        "process_thread_count",
        "cpython_gc_collected_objects_total",
        "cpython_gc_uncollectable_objects_total",
        # exai-canary (services/exai_canary/telemetry.py); the gauge's unit "s" adds _seconds
        "exai_canary_checks_total",
        "exai_canary_check_duration_seconds_bucket",
        "exai_canary_check_duration_seconds_count",
        "exai_canary_check_duration_seconds_sum",
        "exai_canary_last_success_seconds",
        "otel_sdk_processor_span_processed_total",
        # every service's SDK, on each export whatever the traffic (ServiceTelemetryAbsent)
        "otel_sdk_processor_span_queue_capacity",
        "gen_ai_client_token_usage_bucket",
        "gen_ai_client_token_usage_count",
        "gen_ai_client_token_usage_sum",
        "gen_ai_client_operation_duration_seconds_bucket",
        "gen_ai_client_operation_duration_seconds_count",
        "gen_ai_client_operation_duration_seconds_sum",
        "gen_ai_client_operation_time_to_first_chunk_seconds_bucket",
        "gen_ai_client_operation_time_to_first_chunk_seconds_count",
        "gen_ai_client_operation_time_to_first_chunk_seconds_sum",
        "gen_ai_client_operation_time_per_output_chunk_seconds_bucket",
        "gen_ai_client_operation_time_per_output_chunk_seconds_count",
        "gen_ai_client_operation_time_per_output_chunk_seconds_sum",
        # the gateway's MCP server conventions
        "mcp_server_operation_duration_seconds_bucket",
        "mcp_server_operation_duration_seconds_count",
        "mcp_server_operation_duration_seconds_sum",
        "mcp_server_session_duration_seconds_bucket",
        "mcp_server_session_duration_seconds_count",
        "mcp_server_session_duration_seconds_sum",
        "http_server_request_duration_seconds_bucket",
        "http_client_request_duration_seconds_bucket",
        # ASGI instrumentation with OTEL_SEMCONV_STABILITY_OPT_IN=http (Content-Length)
        "http_server_request_body_size_bytes_sum",
        "http_server_response_body_size_bytes_sum",
        # collector connectors
        "traces_spanmetrics_calls_total",
        "traces_spanmetrics_latency_bucket",
        "traces_spanmetrics_latency_count",
        "traces_spanmetrics_latency_sum",
        "traces_spanmetrics_kept_calls_total",
        "traces_spanmetrics_kept_latency_bucket",
        "traces_spanmetrics_kept_latency_count",
        "traces_spanmetrics_kept_latency_sum",
        "traces_service_graph_request_total",
        "traces_service_graph_request_failed_total",
        "traces_service_graph_request_server_seconds_bucket",
        "traces_service_graph_request_client_seconds_bucket",
        # collector self-telemetry
        "otelcol_receiver_accepted_spans_total",
        "otelcol_receiver_accepted_metric_points_total",
        "otelcol_receiver_accepted_log_records_total",
        "otelcol_receiver_refused_log_records_total",
        "otelcol_receiver_refused_spans_total",
        "otelcol_receiver_refused_metric_points_total",
        "otelcol_exporter_sent_spans_total",
        "otelcol_exporter_sent_metric_points_total",
        "otelcol_exporter_sent_log_records_total",
        "otelcol_exporter_send_failed_log_records_total",
        "otelcol_exporter_send_failed_spans_total",
        "otelcol_exporter_send_failed_metric_points_total",
        "otelcol_exporter_queue_size",
        "otelcol_exporter_queue_capacity",
        # tail_sampling at telemetry level normal (v0.161)
        "otelcol_processor_tail_sampling_count_traces_sampled_total",
        "otelcol_processor_tail_sampling_global_count_traces_sampled_total",
        "otelcol_processor_tail_sampling_new_trace_id_received_total",
        "otelcol_processor_tail_sampling_sampling_trace_dropped_too_early_total",
        "otelcol_processor_tail_sampling_sampling_traces_on_memory",
        # late spans: decision-cache releases (sampled="true"|"false"), and late_span_age
        # (unit s: _seconds) for decided traces still in memory
        "otelcol_processor_tail_sampling_early_releases_from_cache_decision_total",
        "otelcol_processor_tail_sampling_sampling_late_span_age_seconds_bucket",
        "otelcol_processor_tail_sampling_sampling_late_span_age_seconds_count",
        "otelcol_processor_tail_sampling_sampling_late_span_age_seconds_sum",
        # the collector's process (memory against memory_limiter)
        "otelcol_process_runtime_heap_alloc_bytes",
        "otelcol_process_memory_rss_bytes",
        # the services' newer instruments the dashboards chart (fallbacks, rate-limit
        # headroom, configured dependencies, process metrics of the system-metrics
        # instrumentation)
        "exai_provider_fallbacks_total",
        "exai_provider_ratelimit_remaining",
        "exai_provider_ratelimit_limit",
        "exai_storage_dependency_configured",
        "process_cpu_time_seconds_total",
        "process_memory_usage_bytes",
        "process_open_file_descriptor_count",
        "cpython_gc_collections_total",
        # Prometheus' own, scraped by its job `prometheus` (CanarySilent's start-up grace)
        "process_start_time_seconds",
        "up",
    }
)

_METRIC_TOKEN = re.compile(
    r"\b((?:exai|gen_ai|mcp|traces|otelcol|otel_sdk|http)_[A-Za-z0-9_]+|up)\b(?=\s*[{\[)]|\s*$|\s*[=!<>])"
)


def metric_names_in(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression (label names excluded)."""
    # Drop label matchers and grouping clauses: their names are labels, not metrics.
    without_matchers = re.sub(r"\{[^}]*\}", "{}", expr)
    without_grouping = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_matchers
    )
    return {match.group(1) for match in _METRIC_TOKEN.finditer(without_grouping)}
