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
    assert len(latency_panels) == 3
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
    for component in ("WebSocket", "Redis", "Durable store", "Kimi", "GLM"):
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
            if "traces_service_graph_" in target["expr"]:
                # The service graph's series name the caller `client` and carry no
                # environment.
                assert 'client=~"$service"' in target["expr"], panel["title"]
                continue
            assert '$service"' in target["expr"] and '$env"' in target["expr"], panel["title"]
    kinds = {p["title"]: p["type"] for p in _panels(board)}
    assert kinds["Server latency heatmap"] == "heatmap"
    assert {
        "DB and Redis commands per second",
        "Requests per second by HTTP route and status",
    } <= set(kinds)
    exprs = _exprs(board)
    assert 'span_kind="SPAN_KIND_CLIENT"' in exprs and 'db_system_name!=""' in exprs


def test_llm_dashboard_covers_usage_cost_streaming_and_resilience() -> None:
    exprs = _exprs(_board("exai-llm"))
    for needle in (
        "exai_provider_tokens_total",
        "exai_provider_cost_total",
        "gen_ai_client_operation_time_to_first_chunk_seconds_bucket",
        "gen_ai_client_operation_time_per_output_chunk_seconds_bucket",
        "exai_provider_retries_total",
        "exai_provider_circuit_state",
        "exai_provider_fallbacks_total",
        "exai_fallback_from",
        "exai_client_id",
        "exai_provider_ratelimit_remaining",
        "exai_provider_ratelimit_limit",
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
    for window in ("5m", "30m", "1h", "6h", "30d"):
        assert f"exai:gateway_call_errors:ratio_rate{window}" in exprs
        assert f"exai:gateway_latency_objective_missed:ratio_rate{window}" in exprs
    for indicator in ("first_chunk", "overhead"):
        assert f'exai_slo_indicator="{indicator}"' in exprs
    assert "exai_gateway_time_to_first_chunk_seconds_bucket" in exprs
    assert "exai_gateway_overhead_duration_seconds_bucket" in exprs
    assert 'ALERTS{alertstate="firing"' in exprs
    (alert_list,) = [p for p in _panels(board) if p["type"] == "alertlist"]
    assert alert_list["options"]["stateFilter"]["firing"] is True
    assert alert_list["options"]["alertInstanceLabelFilter"] == '{severity!="info"}'


def test_slo_alert_counts_leave_out_the_watchdog_heartbeat() -> None:
    # The Watchdog (severity=info) fires all the time: counting it keeps "Alerts firing"
    # red on a healthy system.
    panels = {p["title"]: p for p in _panels(_board("exai-slo"))}
    for title in ("Alerts firing", "Alerts over time"):
        (target,) = panels[title]["targets"]
        assert 'ALERTS{alertstate="firing", severity!="info"}' in target["expr"], title


def test_slo_burn_rate_panels_draw_the_alert_thresholds() -> None:
    burn = [p for p in _panels(_board("exai-slo")) if p["title"].endswith(": burn rate")]
    assert len(burn) == 3
    for panel in burn:
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults["custom"]["thresholdsStyle"]["mode"] in ("line", "dashed", "line+area")
        levels = {step["value"] for step in defaults["thresholds"]["steps"]}
        assert {1, 3, 6, 14.4} <= levels, panel["title"]


def test_slo_budget_left_is_the_30_day_budget_and_never_negative_or_nan() -> None:
    panels = {p["title"]: p for p in _panels(_board("exai-slo"))}
    for name in ("Availability", "First chunk", "Overhead"):
        left = panels[f"{name}: budget left (30 d)"]
        (target,) = left["targets"]
        expr = target["expr"]
        assert "ratio_rate30d" in expr and "clamp_min(1 - (" in expr and ", 0)" in expr
        # `>= 0` drops the 0/0 of an idle month; `or on () vector(1)`: all budget left.
        assert ">= 0)" in expr and expr.endswith("or on ()\nvector(1)")
        texts = [
            result["text"]
            for mapping in left["fieldConfig"]["defaults"]["mappings"]
            for result in mapping.get("options", {}).values()
            if isinstance(result, dict) and "text" in result
        ]
        assert "exhausted" in texts
        (spent,) = panels[f"{name}: budget spent (30 d)"]["targets"]
        assert "ratio_rate30d" in spent["expr"] and "clamp" not in spent["expr"]


def test_slo_panels_follow_the_environment_variable() -> None:
    board = _board("exai-slo")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert "deployment_environment_name" in variables["env"]["query"]["query"]
    for panel in _panels(board):
        for target in panel.get("targets", []):
            if "ALERTS" not in target["expr"]:
                assert 'deployment_environment_name=~"$env"' in target["expr"], panel["title"]


# ------------------------------------------------------------------ honest cards, restarts,
# idle systems, environments, links

# Gauges the services push: a restarted process's last sample stays queryable for 5
# minutes, so every panel on them must leave out instances that stopped exporting.
PUSHED_GAUGES = (
    "exai_gateway_connections",
    "exai_gateway_inflight",
    "exai_provider_circuit_state",
    "exai_provider_cost_budget",
    "exai_provider_ratelimit_remaining",
    "exai_provider_ratelimit_limit",
    "exai_storage_dependency_configured",
    "process_memory_usage_bytes",
    "process_open_file_descriptor_count",
)
OUR_BOARDS = ("exai-overview", "exai-service", "exai-llm")
LIVE = re.compile(r"\s*unless on \(service_instance_id\) exai:instance:stale\)")


def test_gauge_panels_leave_out_instances_that_stopped_exporting() -> None:
    seen = set()
    for uid in OUR_BOARDS:
        for panel in _panels(_board(uid)):
            for target in panel.get("targets", []):
                expr = target.get("expr", "")
                for gauge in PUSHED_GAUGES:
                    for found in re.finditer(rf"\b{gauge}\b(\{{[^}}]*\}})?", expr):
                        seen.add(gauge)
                        assert LIVE.match(expr, found.end()), (panel["title"], expr)
    assert seen == set(PUSHED_GAUGES)
    rules = load_yaml("deploy/prometheus/rules/instances.yml")
    records = {r["record"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    assert "otel_sdk_processor_span_queue_capacity" in records["exai:instance_export_age:seconds"]
    assert records["exai:instance:stale"].strip() == "exai:instance_export_age:seconds > 30"


def test_every_panel_of_our_boards_follows_the_env_variable() -> None:
    for uid in OUR_BOARDS:
        board = _board(uid)
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["env"]["allValue"] == ".*"
        for panel in _panels(board):
            for target in panel.get("targets", []):
                expr = target.get("expr", "")
                if target["datasource"]["type"] not in ("prometheus", "loki"):
                    continue
                if "traces_service_graph_" in expr:
                    continue  # no environment label on the service graph
                if target["datasource"]["type"] == "loki":
                    # A label filter: Loki may keep the environment as structured metadata.
                    assert '| deployment_environment_name=~"$env"' in expr, panel["title"]
                    continue
                selectors = re.findall(r"(?:[a-zA-Z0-9_:]+|^)\{[^}]*\}", expr)
                assert selectors, (uid, panel["title"], expr)
                for selector in selectors:
                    assert 'deployment_environment_name=~"$env"' in selector, (
                        uid,
                        panel["title"],
                        selector,
                    )


def test_component_cards_measure_what_their_titles_say() -> None:
    cards = {
        p["title"]: p
        for p in _panels(_board("exai-overview"))
        if p["type"] == "stat" and ": " in p["title"]
    }
    for kind in ("events/s", "errors/s", "average response time"):
        assert 'db_system_name="redis"' in cards[f"Redis: {kind}"]["targets"][0]["expr"]
        durable = cards[f"Durable store: {kind}"]["targets"][0]["expr"]
        assert 'db_system_name=~"postgresql|supabase|sqlite"' in durable
    for title, panel in cards.items():
        expr = panel["targets"][0]["expr"]
        assert "span_name" not in expr, title  # GET/POST are not Redis commands
        if title.startswith(("Redis: ", "Durable store: ")):
            # A store the adapter does not use is "not configured", not "No data".
            assert "-1 * (" in expr and "exai_storage_dependency_configured" in expr, title
            mappings = panel["fieldConfig"]["defaults"]["mappings"]
            assert {"text": "not configured", "color": "text"} in [
                option for m in mappings if m["type"] == "value" for option in m["options"].values()
            ], title
    # The old titles named what the numbers were not.
    assert not {"Redis: bytes read/s", "WebSocket: payload bytes/s"} & set(cards)
    for provider in ("Kimi", "GLM"):
        mean = cards[f"{provider}: average response time"]["targets"][0]["expr"]
        assert mean.count('error_type!="circuit_open"') == 2, mean


def test_ratio_and_availability_stats_say_no_traffic_instead_of_nan() -> None:
    for uid in OUR_BOARDS:
        for panel in _panels(_board(uid)):
            if panel["type"] != "stat" or panel["fieldConfig"]["defaults"].get("unit") not in (
                "percentunit",
                "s",
            ):
                continue
            defaults = panel["fieldConfig"]["defaults"]
            assert defaults.get("noValue"), panel["title"]
            specials = [m for m in defaults.get("mappings", []) if m["type"] == "special"]
            if "\n/\n" in panel["targets"][0]["expr"]:  # a ratio or mean of rates
                assert any(m["options"]["match"] == "nan" for m in specials), panel["title"]


def test_latency_heatmap_counts_each_call_once() -> None:
    (panel,) = [p for p in _panels(_board("exai-service")) if p["type"] == "heatmap"]
    (target,) = panel["targets"]
    assert target["format"] == "heatmap"
    # A per-second rate per bucket; increase() over $__rate_interval (about 4 steps) at
    # every step counted each call about 4 times.
    assert re.fullmatch(r"sum by \(le\) \(rate\(.+\[\$__rate_interval\]\)\)", target["expr"])
    assert panel["options"]["calculate"] is False


def test_outgoing_calls_are_grouped_by_callee() -> None:
    board = _board("exai-service")
    for panel in _panels(board):
        if panel["title"].startswith("Outgoing call"):
            for target in panel.get("targets", []):
                assert "by (client, server" in target["expr"], panel["title"]
                assert "span_name" not in target["expr"], panel["title"]


def test_spend_is_read_against_the_configured_budget() -> None:
    panels = {p["title"]: p for p in _panels(_board("exai-llm"))}
    share = panels["Spend rate (share of budget)"]
    assert "exai_provider_cost_budget" in share["targets"][0]["expr"]
    assert share["fieldConfig"]["defaults"]["unit"] == "percentunit"
    steps = share["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1] == {"value": 1, "color": "red"}
    exprs = [t["expr"] for t in panels["Spend rate and budget (USD/hour)"]["targets"]]
    assert any("exai_provider_cost_budget" in e for e in exprs)


def test_prometheus_panels_link_to_the_traces_and_logs_of_their_service() -> None:
    for uid in OUR_BOARDS:
        for panel in _panels(_board(uid)):
            if panel.get("datasource", {}).get("type") != "prometheus":
                continue
            links = panel["fieldConfig"]["defaults"]["links"]
            targets = {link["internal"]["datasourceUid"]: link for link in links}
            assert set(targets) == {"tempo", "loki"}, (uid, panel["title"])
            tempo = targets["tempo"]["internal"]["query"]["query"]
            loki = targets["loki"]["internal"]["query"]["expr"]
            service = re.fullmatch(r'\{ resource\.service\.name =~ "(.+)" \}', tempo)
            assert service, tempo
            assert loki == f'{{service_name=~"{service.group(1)}"}}'
            if uid == "exai-service":
                assert service.group(1) in ("$service", "${__field.labels.service_name}")
            legends = [t.get("legendFormat", "") for t in panel["targets"]]
            if any("{{service_name}}" in legend for legend in legends):
                assert service.group(1) == "${__field.labels.service_name}", panel["title"]
