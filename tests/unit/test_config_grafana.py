"""Grafana provisioning and the generated dashboards.

The committed dashboard JSON must equal grafana/generate_dashboards.py's output
(regenerate with `python grafana/generate_dashboards.py`), reference only provisioned
datasources, and query only metric names Prometheus really stores.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.config_tools import (
    KNOWN_METRICS,
    REPO_ROOT,
    load_yaml,
    metric_names_in,
    recording_rule_names,
)

DATASOURCES = load_yaml("grafana/provisioning/datasources/datasources.yaml")
PROVIDERS = load_yaml("grafana/provisioning/dashboards/dashboards.yaml")
COMPOSE = load_yaml("docker-compose.yml")
DASHBOARDS_DIR = REPO_ROOT / "grafana" / "dashboards"


def generator() -> ModuleType:
    path = REPO_ROOT / "grafana" / "generate_dashboards.py"
    spec = importlib.util.spec_from_file_location("exai_generate_dashboards", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def datasource(uid: str) -> dict[str, Any]:
    matches = [ds for ds in DATASOURCES["datasources"] if ds["uid"] == uid]
    assert len(matches) == 1, uid
    found: dict[str, Any] = matches[0]
    return found


# ------------------------------------------------------------------ datasources


def test_datasources_have_fixed_uids_and_types() -> None:
    assert DATASOURCES["apiVersion"] == 1
    types = {ds["uid"]: ds["type"] for ds in DATASOURCES["datasources"]}
    assert types == {
        "prometheus": "prometheus",
        "tempo": "tempo",
        "loki": "loki",
        "alertmanager": "alertmanager",
    }
    assert datasource("prometheus")["isDefault"] is True


def test_datasource_urls_are_compose_services_on_their_ports() -> None:
    urls = {ds["uid"]: ds["url"] for ds in DATASOURCES["datasources"]}
    assert urls == {
        "prometheus": "http://prometheus:9090",
        "tempo": "http://tempo:3200",
        "loki": "http://loki:3100",
        "alertmanager": "http://alertmanager:9093",
    }
    for uid in urls:
        assert uid in COMPOSE["services"]


def test_prometheus_exemplars_link_to_tempo() -> None:
    destinations = datasource("prometheus")["jsonData"]["exemplarTraceIdDestinations"]
    assert {"name": "trace_id", "datasourceUid": "tempo"}.items() <= destinations[0].items()


def _unescaped(text: str) -> str:
    """What Grafana sees once it has expanded the provisioning file ($$ -> $)."""
    return text.replace("$$", "$")


def test_tempo_links_to_metrics_service_map_node_graph_and_search() -> None:
    data = datasource("tempo")["jsonData"]
    assert data["serviceMap"]["datasourceUid"] == "prometheus"
    assert data["nodeGraph"]["enabled"] is True
    assert data["search"]["hide"] is False
    traces_to_metrics = data["tracesToMetrics"]
    assert traces_to_metrics["datasourceUid"] == "prometheus"
    assert {"key": "service.name", "value": "service_name"} in traces_to_metrics["tags"]
    for query in traces_to_metrics["queries"]:
        # Grafana expands $VAR in provisioning files: the macro must be escaped.
        assert "$$__tags" in query["query"] and "$__tags" not in query["query"].replace("$$", "")
        names = metric_names_in(query["query"].replace("$$__tags", ""))
        assert names and names <= KNOWN_METRICS, names
        assert names <= {"traces_spanmetrics_calls_total", "traces_spanmetrics_latency_bucket"}
    error_rate = next(q for q in traces_to_metrics["queries"] if q["name"] == "Error rate")
    assert " or " in error_rate["query"], "an error rate must be 0, not No data, when healthy"


def test_tempo_links_to_the_spans_log_lines_in_loki() -> None:
    links = datasource("tempo")["jsonData"]["tracesToLogsV2"]
    assert links["datasourceUid"] == "loki"
    assert {"key": "service.name", "value": "service_name"} in links["tags"]
    assert links["filterByTraceID"] is True
    # OTLP log records keep trace_id as structured metadata, not in the line: the
    # custom query filters on it rather than grepping the text.
    assert links["customQuery"] is True
    assert _unescaped(links["query"]) == '{${__tags}} | trace_id="${__trace.traceId}"'


def test_loki_log_lines_link_to_their_trace() -> None:
    (field,) = datasource("loki")["jsonData"]["derivedFields"]
    assert field["name"] == "trace_id"
    assert field["matcherType"] == "label" and field["matcherRegex"] == "trace_id"
    assert field["datasourceUid"] == "tempo"
    assert _unescaped(field["url"]) == "${__value.raw}"


def test_alertmanager_datasource_is_prometheus_flavoured() -> None:
    assert datasource("alertmanager")["jsonData"]["implementation"] == "prometheus"


# ------------------------------------------------------------------ dashboard provider


def test_dashboard_provider_reads_the_folder_compose_mounts() -> None:
    (provider,) = PROVIDERS["providers"]
    assert provider["type"] == "file"
    mounts = COMPOSE["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


# ------------------------------------------------------------------ dashboards


EXPECTED_DASHBOARDS = {
    "exai-overview.json": "exai-overview",
    "exai-service.json": "exai-service",
    "exai-llm.json": "exai-llm",
    "exai-pipeline.json": "exai-pipeline",
    "exai-slo.json": "exai-slo",
}


def test_committed_dashboards_equal_the_generator_output() -> None:
    rendered = generator().rendered()
    committed = {p.name: p.read_text(encoding="utf-8") for p in DASHBOARDS_DIR.glob("*.json")}
    assert set(rendered) == set(EXPECTED_DASHBOARDS)
    assert set(committed) == set(rendered), "run: python grafana/generate_dashboards.py"
    for name, content in rendered.items():
        assert committed[name] == content, (
            f"{name} is stale: run python grafana/generate_dashboards.py"
        )
        assert json.loads(content)["uid"] == EXPECTED_DASHBOARDS[name]


def test_generator_check_mode_agrees(capsys: pytest.CaptureFixture[str]) -> None:
    assert generator().main(["--check"]) == 0


def test_sdk_is_the_grafana_12_line_and_compose_runs_grafana_12() -> None:
    # The epoch-numbered builds (N!10.1.0 … N!11.6.0) are the frozen 10.x/11.x lines and
    # sort above every "next" build: only an exact pin of a plain build number gets the
    # line generated for Grafana 12.
    pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (pin,) = re.findall(r'"grafana-foundation-sdk==([^"]+)"', pyproject)
    assert re.fullmatch(r"\d{10}", pin), pin
    assert importlib.metadata.version("grafana-foundation-sdk") == pin
    # ${EXAI_GRAFANA_IMAGE:-grafana/grafana:…}: the upstream image unless a site mirrors it.
    image = COMPOSE["services"]["grafana"]["image"]
    assert re.fullmatch(r"\$\{EXAI_GRAFANA_IMAGE:-grafana/grafana:12\.\d+\.\d+\}", image), image


def _dashboards() -> list[dict[str, Any]]:
    return [
        json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARDS_DIR.glob("*.json"))
    ]


def _board(uid: str) -> dict[str, Any]:
    return next(b for b in _dashboards() if b["uid"] == uid)


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _exprs(board: dict[str, Any]) -> str:
    return "\n".join(
        target.get("expr", "") + target.get("query", "")
        for panel in _panels(board)
        for target in panel.get("targets", [])
    )


def _titles(board: dict[str, Any]) -> set[str]:
    return {panel["title"] for panel in _panels(board)}


def test_panels_have_unique_ids_and_use_provisioned_datasources() -> None:
    uids = {ds["uid"] for ds in DATASOURCES["datasources"]}
    for board in _dashboards():
        ids = [panel["id"] for panel in _panels(board)]
        assert len(ids) == len(set(ids)), board["uid"]
        for panel in _panels(board):
            if "datasource" in panel:
                assert panel["datasource"]["uid"] in uids, panel["title"]
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] in uids, panel["title"]


def test_dashboard_queries_use_only_metrics_prometheus_stores() -> None:
    known = KNOWN_METRICS | recording_rule_names()
    for board in _dashboards():
        for panel in _panels(board):
            for target in panel.get("targets", []):
                if target["datasource"]["type"] == "prometheus":
                    unknown = metric_names_in(target["expr"]) - known
                    assert not unknown, (panel["title"], unknown)


# Counters whose series do not exist until the first event: a panel built on one alone
# says "No data" exactly when all is well.
MAY_NEVER_HAPPEN = re.compile(
    r'STATUS_CODE_ERROR|exai_outcome=~?"error|_refused_|_send_failed_|_retries_total'
    r'|queue_full|ALERTS\{|exai_cache_result="hit"|decision="sampled"'
    r'|exai_token_type="cached"'
)


def test_no_panel_goes_blank_while_nothing_fails() -> None:
    for board in _dashboards():
        for panel in _panels(board):
            for target in panel.get("targets", []):
                expr = target.get("expr", "")
                if target["datasource"]["type"] != "prometheus" or not MAY_NEVER_HAPPEN.search(
                    expr
                ):
                    continue
                if panel["title"] == "Alerts over time":
                    continue  # a timeline of firing alerts is empty when none fires
                assert re.search(r"\bor\b", expr), (board["uid"], panel["title"], expr)


def test_error_ratio_by_service_is_zero_not_no_data_when_healthy() -> None:
    (panel,) = [
        p for p in _panels(_board("exai-overview")) if p["title"] == "Error ratio by service"
    ]
    expr = panel["targets"][0]["expr"]
    numerator, denominator = expr.split("\n/\n")
    assert "STATUS_CODE_ERROR" in numerator and " or" in numerator and "* 0" in numerator
    assert "STATUS_CODE_ERROR" not in denominator


def test_latency_panels_plot_all_spans_and_take_exemplars_from_kept_ones() -> None:
    latency_panels = [
        panel
        for board in _dashboards()
        for panel in _panels(board)
        if any(
            "traces_spanmetrics_latency_bucket" in t.get("expr", "")
            for t in panel.get("targets", [])
        )
        and panel["type"] == "timeseries"
    ]
    assert len(latency_panels) == 4
    for panel in latency_panels:
        plotted, kept = panel["targets"]
        assert "traces_spanmetrics_latency_bucket" in plotted["expr"]
        assert not plotted.get("exemplar")
        assert "traces_spanmetrics_kept_latency_bucket" in kept["expr"] and kept["exemplar"]
        assert plotted["expr"].replace("_latency_bucket", "_kept_latency_bucket") == kept["expr"]
        (override,) = panel["fieldConfig"]["overrides"]
        assert override["matcher"] == {"id": "byFrameRefID", "options": kept["refId"]}
        assert override["properties"][0]["value"]["viz"] is True
    for board in _dashboards():
        for panel in _panels(board):
            for target in panel.get("targets", []):
                if target.get("exemplar"):
                    assert "_kept_" in target["expr"], panel["title"]


def test_overview_covers_what_the_issue_asks_for() -> None:
    board = _board("exai-overview")
    exprs = _exprs(board)
    for needle in (
        "traces_spanmetrics_calls_total",  # RED per service
        "traces_spanmetrics_latency_bucket",
        "exai_provider_cost_total",
        "exai_gateway_connections",
        "exai_gateway_calls_total",
        "exai_storage_cache_lookups_total",
        '{ span.exai.correlation_id = "$correlation_id" }',
    ):
        assert needle in exprs, needle
    texts = [p["options"]["content"] for p in _panels(board) if p["type"] == "text"]
    assert any('{ span.exai.correlation_id = "<id>" }' in text for text in texts)
    # The old monitoring page: a card per component with events, errors, time, bytes.
    titles = _titles(board)
    for component in ("WebSocket", "Redis", "Supabase (durable store)", "Kimi", "GLM"):
        cards = [t for t in titles if t.startswith(f"{component}: ")]
        assert len(cards) == 4, (component, cards)
        for kind in ("events/s", "errors/s", "average response time"):
            assert f"{component}: {kind}" in titles
    # …and its live event log: Loki in compose, a Prometheus table where there is none.
    kinds = {p["title"]: p["type"] for p in _panels(board)}
    assert kinds["Live event log"] == "logs"
    assert kinds["Recent events (5 min)"] == "table"


def test_service_drill_down_has_service_and_env_variables() -> None:
    board = _board("exai-service")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert set(variables) == {"service", "env"}
    assert variables["service"]["query"]["query"] == (
        "label_values(traces_spanmetrics_calls_total, service_name)"
    )
    assert variables["env"]["query"]["query"] == (
        'label_values(traces_spanmetrics_calls_total{service_name=~"$service"},'
        " deployment_environment_name)"
    )
    for panel in _panels(board):
        for target in panel.get("targets", []):
            assert '$service"' in target["expr"] and '$env"' in target["expr"], panel["title"]
    kinds = {p["title"]: p["type"] for p in _panels(board)}
    assert kinds["Server latency heatmap"] == "heatmap"
    assert {
        "DB and Redis commands per second",
        "Requests per second by HTTP route and status",
    } <= set(kinds)
    exprs = _exprs(board)
    assert 'span_kind="SPAN_KIND_CLIENT"' in exprs and "EVALSHA" in exprs and "SELECT" in exprs


def test_llm_dashboard_covers_usage_cost_streaming_and_resilience() -> None:
    exprs = _exprs(_board("exai-llm"))
    for needle in (
        "exai_provider_tokens_total",
        "exai_provider_cost_total",
        "gen_ai_client_operation_time_to_first_chunk_seconds_bucket",
        "gen_ai_client_operation_time_per_output_chunk_seconds_bucket",
        "exai_provider_retries_total",
        "exai_provider_circuit_state",
        'gen_ai_operation_name="chat"',  # fallbacks
    ):
        assert needle in exprs, needle


def test_pipeline_dashboard_covers_collector_sampling_and_sdk() -> None:
    exprs = _exprs(_board("exai-pipeline"))
    for needle in (
        "otelcol_receiver_accepted_spans_total",
        "otelcol_receiver_accepted_metric_points_total",
        "otelcol_receiver_accepted_log_records_total",
        "otelcol_receiver_refused_spans_total",
        "otelcol_exporter_send_failed_spans_total",
        "otelcol_exporter_queue_size",
        "otelcol_exporter_queue_capacity",
        "otelcol_processor_tail_sampling_global_count_traces_sampled_total",
        "otelcol_processor_tail_sampling_count_traces_sampled_total",
        'otel_sdk_processor_span_processed_total{error_type="queue_full"}',
    ):
        assert needle in exprs, needle


def test_slo_dashboard_shows_burn_rates_and_alerts() -> None:
    board = _board("exai-slo")
    exprs = _exprs(board)
    for window in ("5m", "30m", "1h", "6h", "3d"):
        assert f"exai:gateway_call_errors:ratio_rate{window}" in exprs
        assert f"exai:gateway_call_slow:ratio_rate{window}" in exprs
    assert 'ALERTS{alertstate="firing"}' in exprs
    (alert_list,) = [p for p in _panels(board) if p["type"] == "alertlist"]
    assert alert_list["options"]["stateFilter"]["firing"] is True
