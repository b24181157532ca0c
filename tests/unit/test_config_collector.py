"""Static checks of otel-collector.yaml: the contracts the pipeline promises (DESIGN §6).

`otelcol validate` (test_config_tools.py) proves the file loads; these tests pin down
what it must do: the component set of the custom build, sampling after the span
metrics, the tail-sampling policies, redaction, bounded metric dimensions, and that the
two stacks differ only through ${env:…} defaults.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from exai_telemetry.settings import ServiceSettings
from tests.config_tools import REPO_ROOT, load_yaml
from ws_gateway.settings import GatewaySettings

CONFIG = load_yaml("otel-collector.yaml")
COMPONENTS_TXT = REPO_ROOT / "deploy" / "local-stack" / "otelcol" / "components.txt"
KINDS = {
    "extensions": "extension",
    "receivers": "receiver",
    "processors": "processor",
    "connectors": "connector",
    "exporters": "exporter",
}
# v0.161 renamed these components; the old names still work as deprecated aliases and
# the build's components.txt lists the old ones.
CANONICAL = {
    ("exporter", "otlp_grpc"): "otlp",
    ("exporter", "otlp_http"): "otlphttp",
    ("connector", "span_metrics"): "spanmetrics",
}


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def used_components() -> set[str]:
    used = set()
    for section, kind in KINDS.items():
        for component_id in CONFIG.get(section) or {}:
            name = component_type(component_id)
            used.add(f"{kind}/{CANONICAL.get((kind, name), name)}")
    return used


_ENV_DEFAULT = re.compile(r"^\$\{env:([A-Z0-9_]+):-([^}]*)\}$")
# The logs exporter is chosen per stack; each value must name a defined exporter.
LOGS_EXPORTER_BY_STACK = {"compose": "otlp_http/loki", "no-docker": "file/logs"}


def _resolve(component_id: str, stack: str = "compose") -> str:
    match = _ENV_DEFAULT.match(component_id)
    if match is None:
        return component_id
    assert match.group(1) == "EXAI_LOGS_EXPORTER", component_id
    return LOGS_EXPORTER_BY_STACK[stack] if stack != "compose" else match.group(2)


def pipelines(stack: str = "compose") -> dict[str, dict[str, list[str]]]:
    raw: dict[str, dict[str, list[str]]] = CONFIG["service"]["pipelines"]
    return {
        name: {role: [_resolve(c, stack) for c in ids] for role, ids in pipeline.items()}
        for name, pipeline in raw.items()
    }


def test_uses_exactly_the_components_of_the_custom_build() -> None:
    if not COMPONENTS_TXT.exists():
        pytest.fail(f"{COMPONENTS_TXT} is missing (written by the collector build)")
    lines = COMPONENTS_TXT.read_text(encoding="utf-8").splitlines()
    built = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    used = used_components()
    assert used == built, f"only in config: {used - built}; only in build: {built - used}"


def test_every_defined_component_is_used_in_a_pipeline() -> None:
    referenced = set(CONFIG["service"]["extensions"])
    for stack in LOGS_EXPORTER_BY_STACK:
        for pipeline in pipelines(stack).values():
            for role in ("receivers", "processors", "exporters"):
                referenced.update(pipeline.get(role, []))
    defined = {cid for section in KINDS for cid in CONFIG.get(section) or {}}
    assert defined == referenced


def test_logs_go_to_loki_in_compose_and_to_a_file_exai_trace_reads_without_docker() -> None:
    assert pipelines("compose")["logs"]["exporters"] == ["otlp_http/loki"]
    assert pipelines("no-docker")["logs"]["exporters"] == ["file/logs"]
    logs = pipelines()["logs"]
    assert logs["receivers"] == ["otlp"]
    assert "redaction/logs" in logs["processors"]
    file_logs = CONFIG["exporters"]["file/logs"]
    assert file_logs["path"] == "${env:EXAI_TELEMETRY_DIR:-/var/lib/otelcol}/logs.jsonl"
    assert file_logs["format"] == "json"
    assert file_logs["rotation"]["max_megabytes"] > 0
    loki = CONFIG["exporters"]["otlp_http/loki"]["endpoint"]
    assert loki == "${env:EXAI_LOKI_OTLP_ENDPOINT:-http://loki:3100/otlp}"


def test_memory_limiter_runs_first_in_every_pipeline_that_receives_otlp() -> None:
    for name, pipeline in pipelines().items():
        if "otlp" in pipeline["receivers"]:
            assert pipeline["processors"][0] == "memory_limiter", name


def test_span_metrics_and_service_graph_see_every_span_before_sampling() -> None:
    ingest = pipelines()["traces/ingest"]
    assert ingest["receivers"] == ["otlp"]
    assert "tail_sampling" not in ingest["processors"]
    assert {"forward/spanmetrics", "forward/servicegraph", "forward"} <= set(ingest["exporters"])
    span_metrics = pipelines()["traces/spanmetrics"]
    assert span_metrics["receivers"] == ["forward/spanmetrics"]
    assert span_metrics["exporters"] == ["span_metrics"]
    assert "tail_sampling" not in span_metrics["processors"]
    graph = pipelines()["traces/servicegraph"]
    assert graph["receivers"] == ["forward/servicegraph"]
    assert graph["exporters"] == ["servicegraph"]
    assert "tail_sampling" not in graph["processors"]
    sampled = pipelines()["traces/sampled"]
    assert sampled["receivers"] == ["forward"]
    assert sampled["processors"][0] == "tail_sampling"
    assert any(component_type(e) == "otlp_grpc" for e in sampled["exporters"])
    # Exemplars come only from the spans that were kept.
    assert "forward/spanmetrics-kept" in sampled["exporters"]
    kept = pipelines()["traces/spanmetrics-kept"]
    assert kept["receivers"] == ["forward/spanmetrics-kept"]
    assert kept["exporters"] == ["span_metrics/kept"]
    assert not any("span_metrics" in e for e in ingest["exporters"])
    # Redaction happens before anything leaves the ingest pipeline (connectors included).
    for processor in ("redaction", "transform/redact", "attributes/credential-headers"):
        assert processor in ingest["processors"]


def test_metrics_pipeline_takes_the_connector_output_to_prometheus() -> None:
    metrics = pipelines()["metrics"]
    assert set(metrics["receivers"]) == {
        "otlp",
        "span_metrics",
        "span_metrics/kept",
        "servicegraph",
    }
    # Renamed to the names Grafana's Tempo service-graph table queries.
    assert "transform/spanmetrics-names" in metrics["processors"]
    assert metrics["exporters"] == ["otlp_http/prometheus"]
    endpoint = CONFIG["exporters"]["otlp_http/prometheus"]["endpoint"]
    assert endpoint == "${env:EXAI_PROMETHEUS_OTLP_ENDPOINT:-http://prometheus:9090/api/v1/otlp}"


def _policies() -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in CONFIG["processors"]["tail_sampling"]["policies"]}


def test_tail_sampling_keeps_what_design_requires() -> None:
    policies = _policies()
    by_type: dict[str, list[dict[str, Any]]] = {}
    for policy in policies.values():
        by_type.setdefault(policy["type"], []).append(policy)
    assert by_type["status_code"][0]["status_code"]["status_codes"] == ["ERROR"]
    numeric = by_type["numeric_attribute"][0]["numeric_attribute"]
    assert numeric == {"key": "exai.provider.retries", "min_value": 1}
    boolean = by_type["boolean_attribute"][0]["boolean_attribute"]
    assert boolean == {"key": "exai.provider.fallback", "value": True}
    circuit = by_type["string_attribute"][0]["string_attribute"]
    assert circuit["key"] == "exai.provider.circuit_state"
    assert set(circuit["values"]) == {"open", "half_open"}
    assert by_type["latency"][0]["latency"]["threshold_ms"] == "${env:EXAI_TAIL_LATENCY_MS:-2000}"
    share = by_type["probabilistic"][0]["probabilistic"]["sampling_percentage"]
    assert share == "${env:EXAI_TRACE_SAMPLE_PERCENT:-100}"
    # No policy may drop or invert: policies are OR-ed "keep" decisions.
    assert not {"drop", "not", "and", "composite"} & set(by_type)
    assert not any(
        inner.get("invert_match")
        for p in policies.values()
        for inner in p.values()
        if isinstance(inner, dict)
    )


def _seconds(value: str, variable: str) -> int:
    match = re.fullmatch(rf"\$\{{env:{variable}:-(\d+)s\}}", value)
    assert match, value
    return int(match.group(1))


def _default_int(value: str) -> int:
    match = _ENV_DEFAULT.match(value)
    assert match, value
    return int(match.group(2))


def _longest_export_delay_s() -> float:
    delay_field = ServiceSettings.model_fields["bsp_schedule_delay_ms"]
    longest_ms = max(m.le for m in delay_field.metadata if getattr(m, "le", None) is not None)
    return float(longest_ms) / 1000


def test_tail_sampling_waits_for_the_root_of_the_longest_call() -> None:
    # The first span to arrive (a history read) starts the clock; the root arrives when
    # the call ends, at most the gateway's call timeout later, plus the export delay.
    tail = CONFIG["processors"]["tail_sampling"]
    wait = _seconds(tail["decision_wait"], "EXAI_TAIL_DECISION_WAIT")
    call_timeout = GatewaySettings.model_fields["call_timeout_s"].default
    assert wait >= call_timeout + _longest_export_delay_s() + 1
    # ... and stays an upper bound: ordinary traces are decided soon after their root.
    after_root = _seconds(
        tail["decision_wait_after_root_received"], "EXAI_TAIL_DECISION_WAIT_AFTER_ROOT"
    )
    assert after_root < 10 < wait


def test_tail_sampling_holds_every_undecided_trace_of_its_design_rate() -> None:
    tail = CONFIG["processors"]["tail_sampling"]
    wait = _seconds(tail["decision_wait"], "EXAI_TAIL_DECISION_WAIT")
    rate = tail["expected_new_traces_per_sec"]
    # Every call running into the timeout: `rate` new traces a second, each undecided
    # for up to decision_wait. Evicting one before its decision loses it unseen.
    assert tail["num_traces"] >= rate * wait
    cache = tail["decision_cache"]
    assert cache["sampled_cache_size"] >= 10 * tail["num_traces"]
    assert cache["non_sampled_cache_size"] >= 10 * tail["num_traces"]
    # The memory_limiter refuses before num_traces traces (~36 KB each, measured) fill
    # the heap past its soft limit.
    limiter = CONFIG["processors"]["memory_limiter"]
    soft_limit_mib = _default_int(limiter["limit_mib"]) - _default_int(limiter["spike_limit_mib"])
    assert tail["num_traces"] * 36 / 1024 <= soft_limit_mib


def test_tail_sampling_waits_longer_after_the_root_than_the_services_export_delay() -> None:
    tail = CONFIG["processors"]["tail_sampling"]
    wait = re.fullmatch(
        r"\$\{env:EXAI_TAIL_DECISION_WAIT_AFTER_ROOT:-(\d+)s\}",
        tail["decision_wait_after_root_received"],
    )
    assert wait
    # The longest export delay a service accepts, plus a second for the export itself.
    assert int(wait.group(1)) >= _longest_export_delay_s() + 1


def test_exemplars_only_from_kept_spans_and_only_bounded_dimensions() -> None:
    all_spans = CONFIG["connectors"]["span_metrics"]
    kept = CONFIG["connectors"]["span_metrics/kept"]
    assert all_spans["exemplars"]["enabled"] is False
    assert kept["exemplars"]["enabled"] is True
    assert all_spans["namespace"] == "traces.spanmetrics"
    assert kept["namespace"] == "traces.spanmetrics.kept"
    # Same dimensions and buckets: the kept series line up with the exact ones.
    assert kept["dimensions"] == all_spans["dimensions"]
    assert kept["histogram"] == all_spans["histogram"]
    span_metrics = all_spans
    assert span_metrics["histogram"]["unit"] == "s"
    dimensions = {d["name"] for d in span_metrics["dimensions"]}
    assert {
        "http.response.status_code",
        "gen_ai.provider.name",
        "gen_ai.request.model",
    } <= dimensions
    unbounded = re.compile(r"(_id$|\.id$|url\.|path|query|prompt|completion|message)")
    assert not {d for d in dimensions if unbounded.search(d)}


def test_span_metrics_name_the_callee_of_client_spans_only() -> None:
    for connector in ("span_metrics", "span_metrics/kept"):
        dimensions = {d["name"] for d in CONFIG["connectors"][connector]["dimensions"]}
        assert {"server.address", "db.system.name"} <= dimensions, connector
    # On a server span server.address is the caller's Host header: unbounded.
    statements = CONFIG["processors"]["transform/spanmetrics-callee"]["trace_statements"]
    assert statements[0]["statements"] == [
        'delete_key(span.attributes, "server.address") where span.kind != SPAN_KIND_CLIENT'
    ]
    for pipeline in ("traces/spanmetrics", "traces/spanmetrics-kept"):
        assert pipelines()[pipeline]["processors"] == ["transform/spanmetrics-callee"]


def test_span_metrics_outlive_a_long_weekend_without_traffic() -> None:
    for connector in ("span_metrics", "span_metrics/kept"):
        config = CONFIG["connectors"][connector]
        match = re.fullmatch(r"(\d+)h", config["metrics_expiration"])
        assert match and int(match.group(1)) >= 72, connector
        # What bounds the series a stopped instance leaves behind meanwhile.
        assert 0 < config["aggregation_cardinality_limit"] <= 10000


def test_credentials_and_content_are_redacted() -> None:
    redaction = CONFIG["processors"]["redaction"]
    patterns = [re.compile(p.replace("$$", "$")) for p in redaction["blocked_key_patterns"]]

    def masked(key: str) -> bool:
        return any(p.search(key) for p in patterns)

    for key in ("http.request.header.authorization", "api_key", "exai.ws.token", "x-api-key"):
        assert masked(key), key
    # Token *counts* are telemetry, not credentials.
    for key in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "exai.token.type"):
        assert not masked(key), key

    statements = CONFIG["processors"]["transform/redact"]["trace_statements"]
    text = "\n".join(s for group in statements for s in group["statements"])
    for attribute in ("url.full", "url.query"):
        assert f'span.attributes["{attribute}"]' in text
    for content in ("prompt", "completion", "input\\\\.messages", "output\\\\.messages"):
        assert content in text
    assert "${env:EXAI_CAPTURE_CONTENT:-false}" in text


def test_token_query_parameter_pattern_redacts_the_value_only() -> None:
    statement = CONFIG["processors"]["transform/redact"]["trace_statements"][0]["statements"][0]
    pattern, replacement = re.findall(r'"((?:[^"\\]|\\.)*)"', statement)[1:3]
    # OTTL/Go replacement ${1} is Python's \g<1>; $$ is the collector's escaped $.
    python_replacement = replacement.replace("$${1}", r"\g<1>")
    url = "ws://gw:8079/mcp?x=1&token=s3cr3t-value&y=2"
    redacted = re.sub(pattern.replace("(?i)", ""), python_replacement, url, flags=re.IGNORECASE)
    assert redacted == "ws://gw:8079/mcp?x=1&token=[REDACTED]&y=2"


def test_stacks_differ_only_through_env_defaults() -> None:
    text = (REPO_ROOT / "otel-collector.yaml").read_text(encoding="utf-8")
    for endpoint in re.findall(r"endpoint: (\S+)", text):
        assert endpoint.startswith("${env:"), endpoint
    assert "127.0.0.1" not in "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")
    )
    expected = {
        "EXAI_OTELCOL_HOST",
        "EXAI_TRACES_ENDPOINT",
        "EXAI_PROMETHEUS_OTLP_ENDPOINT",
        "EXAI_TRACE_SAMPLE_PERCENT",
        "EXAI_TAIL_LATENCY_MS",
        "EXAI_TAIL_DECISION_WAIT",
        "EXAI_CAPTURE_CONTENT",
    }
    found = set(re.findall(r"\$\{env:([A-Z0-9_]+)(?::-[^}]*)?\}", text))
    assert expected <= found
    # Every variable has a default: the compose stack sets none of the host ones.
    assert not re.search(r"\$\{env:[A-Z0-9_]+\}", text)


def test_self_telemetry_is_exposed_for_prometheus() -> None:
    readers = CONFIG["service"]["telemetry"]["metrics"]["readers"]
    prometheus = readers[0]["pull"]["exporter"]["prometheus"]
    assert prometheus["port"] == 8888
    # Counters keep the _total suffix the alert rules use.
    assert prometheus["without_type_suffix"] is False
    assert CONFIG["extensions"]["health_check"]["endpoint"].endswith(":13133")
