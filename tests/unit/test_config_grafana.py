"""Grafana provisioning and the generated dashboards.

The committed dashboard JSON must equal grafana/generate_dashboards.py's output
(regenerate with `python grafana/generate_dashboards.py`), reference only provisioned
datasources, and query only metric names Prometheus really stores.
"""

from __future__ import annotations

import importlib.util
import json
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
    assert types == {"prometheus": "prometheus", "tempo": "tempo", "alertmanager": "alertmanager"}
    assert datasource("prometheus")["isDefault"] is True


def test_datasource_urls_are_compose_services_on_their_ports() -> None:
    urls = {ds["uid"]: ds["url"] for ds in DATASOURCES["datasources"]}
    assert urls == {
        "prometheus": "http://prometheus:9090",
        "tempo": "http://tempo:3200",
        "alertmanager": "http://alertmanager:9093",
    }
    for uid in urls:
        assert uid in COMPOSE["services"]


def test_prometheus_exemplars_link_to_tempo() -> None:
    destinations = datasource("prometheus")["jsonData"]["exemplarTraceIdDestinations"]
    assert {"name": "trace_id", "datasourceUid": "tempo"}.items() <= destinations[0].items()


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
        assert metric_names_in(query["query"].replace("$$__tags", "")) <= KNOWN_METRICS


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


def test_committed_dashboards_equal_the_generator_output() -> None:
    rendered = generator().rendered()
    committed = {p.name: p.read_text(encoding="utf-8") for p in DASHBOARDS_DIR.glob("*.json")}
    assert set(committed) == set(rendered), "run: python grafana/generate_dashboards.py"
    for name, content in rendered.items():
        assert committed[name] == content, (
            f"{name} is stale: run python grafana/generate_dashboards.py"
        )


def test_generator_check_mode_agrees(capsys: pytest.CaptureFixture[str]) -> None:
    assert generator().main(["--check"]) == 0


def _dashboards() -> list[dict[str, Any]]:
    return [
        json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARDS_DIR.glob("*.json"))
    ]


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_panels_have_unique_ids_and_use_provisioned_datasources() -> None:
    uids = {ds["uid"] for ds in DATASOURCES["datasources"]}
    for board in _dashboards():
        ids = [panel["id"] for panel in _panels(board)]
        assert len(ids) == len(set(ids)), board["uid"]
        for panel in _panels(board):
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] in uids, panel["title"]


def test_dashboard_queries_use_only_metrics_prometheus_stores() -> None:
    known = KNOWN_METRICS | recording_rule_names()
    for board in _dashboards():
        for panel in _panels(board):
            for target in panel.get("targets", []):
                if "expr" in target:
                    unknown = metric_names_in(target["expr"]) - known
                    assert not unknown, (panel["title"], unknown)


def test_overview_covers_what_the_issue_asks_for() -> None:
    board = next(b for b in _dashboards() if b["uid"] == "exai-overview")
    exprs = "\n".join(
        target.get("expr", "") + target.get("query", "")
        for panel in _panels(board)
        for target in panel.get("targets", [])
    )
    for needle in (
        "traces_span_metrics_calls_total",  # RED per service
        "traces_span_metrics_duration_seconds_bucket",
        "exai_provider_tokens_total",
        "exai_provider_cost_USD_total",
        "exai_gateway_connections",
        "exai_gateway_calls_total",
        "exai_provider_circuit_state",
        "exai_storage_cache_lookups_total",
        '{ span.exai.correlation_id = "$correlation_id" }',
    ):
        assert needle in exprs, needle
    texts = [p["options"]["content"] for p in _panels(board) if p["type"] == "text"]
    assert any('{ span.exai.correlation_id = "<id>" }' in text for text in texts)
    latency = [p for p in _panels(board) if p["title"] == "p95 latency by service"]
    assert latency and latency[0]["targets"][0]["exemplar"] is True
