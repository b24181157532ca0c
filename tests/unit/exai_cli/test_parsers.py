"""Jaeger, Tempo, Loki and OTLP-JSON log answers become the same spans and log records."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from exai_cli.errors import BadResponse, SourceUnavailable
from exai_cli.jaeger import parse_jaeger_traces
from exai_cli.logsource import (
    FileLogSource,
    default_log_file,
    logql,
    parse_log_line,
    parse_loki,
)
from exai_cli.otlp import otlp_id, span_kind, status
from exai_cli.tempo import parse_search, parse_trace, traceql
from exai_cli.types import CORRELATION_ATTRIBUTE, SpanKind, StatusCode, Trace, merge_traces
from exai_telemetry import names
from tests.unit.exai_cli.conftest import (
    ALL_TIME_S,
    FIXTURES,
    JAEGER_TRACE_ID,
    TEMPO_TRACE_ID,
    fixture_json,
)


def test_the_correlation_attribute_is_the_one_the_services_set() -> None:
    assert CORRELATION_ATTRIBUTE == names.CORRELATION_ID


def _jaeger_trace() -> Trace:
    (trace,) = parse_jaeger_traces(fixture_json("jaeger_traces.json"))
    return trace


def test_jaeger_spans_keep_service_parent_kind_status_and_timing() -> None:
    trace = _jaeger_trace()
    assert trace.trace_id == JAEGER_TRACE_ID
    assert len(trace.spans) == 12
    assert trace.services == ["ws-gateway", "storage-adapter", "provider-proxy", "llm-simulator"]
    by_id = {s.span_id: s for s in trace.spans}
    root = by_id["eee19b7ec3c1b174"]
    assert (root.name, root.kind, root.parent_span_id) == (
        "ws call_tool chat",
        SpanKind.SERVER,
        None,
    )
    assert root.duration_ns == 1_200_000_000
    assert trace.roots == [root]
    attempt = by_id["5e6f7a8b9c0d1e2f"]
    assert attempt.parent_span_id == "4d5e6f7a8b9c0d1e"
    # Jaeger drops span.kind for INTERNAL spans.
    assert attempt.kind is SpanKind.INTERNAL
    assert attempt.status is StatusCode.ERROR
    assert attempt.status_message == "kimi answered 429 Too Many Requests"
    assert attempt.attributes["exai.provider.attempt"] == 1
    # The tags Jaeger derives from span fields are fields again, not attributes.
    assert not {"span.kind", "otel.status_code", "error"} & attempt.attributes.keys()
    (event,) = attempt.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "UpstreamRateLimited"
    assert event.time_ns == 1733011200059000 * 1000
    assert by_id["7a8b9c0d1e2f3041"].service == "llm-simulator"
    assert by_id["0b1c2d3e4f5a6b7c"].attributes["http.response.status_code"] == 200


def test_the_same_trace_found_through_several_services_is_merged() -> None:
    answer = fixture_json("jaeger_traces.json")
    # Searching provider-proxy too returns the same trace again, maybe with more spans.
    again = fixture_json("jaeger_traces.json")
    again["data"][0]["spans"] = again["data"][0]["spans"][:3]
    merged = merge_traces(parse_jaeger_traces(answer) + parse_jaeger_traces(again))
    assert [t.trace_id for t in merged] == [JAEGER_TRACE_ID]
    assert len(merged[0].spans) == 12


def test_an_empty_jaeger_answer_is_no_trace_and_garbage_is_a_bad_response() -> None:
    assert parse_jaeger_traces({"data": None, "total": 0}) == []
    assert parse_jaeger_traces({"data": []}) == []
    with pytest.raises(BadResponse):
        parse_jaeger_traces(["not", "jaeger"])
    with pytest.raises(BadResponse):
        parse_jaeger_traces({"data": [{"spans": [{"spanID": "1"}], "processes": {}}]})


def test_tempo_search_ids_are_padded_back_to_32_hex_characters() -> None:
    assert parse_search(fixture_json("tempo_search.json")) == [TEMPO_TRACE_ID]
    assert parse_search({"traces": [], "metrics": {}}) == []
    with pytest.raises(BadResponse):
        parse_search({"error": "nope"} | {"traces": [{"rootServiceName": "x"}]})


def test_tempo_traces_with_base64_ids_and_enum_names_are_read() -> None:
    trace = parse_trace(fixture_json("tempo_trace.json"))
    assert trace is not None
    assert trace.trace_id == TEMPO_TRACE_ID
    by_name = {s.name: s for s in trace.spans}
    root = by_name["ws call_tool chat"]
    assert root.span_id == "00000000000000aa"
    assert root.kind is SpanKind.SERVER
    assert root.status is StatusCode.ERROR
    assert root.status_message.startswith("PROVIDER_ERROR")
    chat = by_name["chat kimi-k2-0905-preview"]
    assert chat.service == "provider-proxy"
    assert chat.parent_span_id == "00000000000000cc"
    assert chat.attributes["gen_ai.request.temperature"] == 0.7
    assert chat.events[0].attributes["exception.type"] == "CircuitOpen"
    assert by_name["POST"].attributes["http.response.status_code"] == 503  # intValue string
    # The storage span's parent was never exported: it stays an orphan root, not lost.
    orphan = by_name["GET /v1/conversations/{continuation_id}"]
    assert orphan.parent_span_id == "00000000000000ff"
    assert {s.name for s in trace.roots} == {"ws call_tool chat", orphan.name}


def test_tempo_v2_answers_wrap_the_same_spans() -> None:
    v1 = fixture_json("tempo_trace.json")
    v2 = {"trace": {"resourceSpans": v1["batches"]}}
    assert parse_trace(v2) == parse_trace(v1)
    assert parse_trace({"batches": []}) is None


def test_otlp_ids_enums_and_statuses_in_both_json_dialects() -> None:
    raw = bytes.fromhex("5b8efff798038103d269b633813fc60c")
    assert otlp_id(base64.b64encode(raw).decode(), 16) == raw.hex()
    assert otlp_id(raw.hex().upper(), 16) == raw.hex()
    assert otlp_id("", 8) is None
    assert otlp_id("0000000000000000", 8) is None
    with pytest.raises(BadResponse):
        otlp_id("not an id!", 8)
    assert span_kind(3) is span_kind("SPAN_KIND_CLIENT") is SpanKind.CLIENT
    assert span_kind(99) is SpanKind.UNSPECIFIED
    assert status({"code": 2, "message": "boom"}) == (StatusCode.ERROR, "boom")
    assert status({"code": "STATUS_CODE_OK"}) == (StatusCode.OK, "")
    assert status({}) == (StatusCode.UNSET, "")


def test_a_log_line_of_the_collector_file_is_an_export_request() -> None:
    first = (FIXTURES / "logs.jsonl").read_text().splitlines()[0]
    (record,) = parse_log_line(first)
    assert record.service == "provider-proxy"
    assert record.severity == "INFO"
    assert record.body == "kimi attempt 1 failed (rate_limit); retrying in 0.05s"
    assert record.trace_id == JAEGER_TRACE_ID
    assert record.span_id == "4d5e6f7a8b9c0d1e"
    assert record.correlation_id == "demo-1"
    assert record.attributes["code.line.number"] == 176
    with pytest.raises(BadResponse):
        parse_log_line('{"resourceSpans": []}')


def test_the_log_file_yields_the_requests_lines_by_correlation_id_or_trace_id() -> None:
    source = FileLogSource(FIXTURES / "logs.jsonl")
    records = source.find("demo-1", {JAEGER_TRACE_ID}, ALL_TIME_S)
    assert [r.body for r in records] == [
        # No correlation attribute, but logged inside the request's trace.
        "conversation history unavailable, answering without it: STORAGE_ERROR",
        "injecting fault rate_limit into kimi kimi-k2-0905-preview",
        "kimi attempt 1 failed (rate_limit); retrying in 0.05s",
    ]
    assert records[0].severity == "WARN"  # from severityNumber 13 alone
    assert source.skipped_lines == 1  # the half-written last line
    assert source.find("demo-1", set(), ALL_TIME_S)[0].service == "llm-simulator"
    assert source.find("nobody", set(), ALL_TIME_S) == []
    assert source.find("demo-1", {JAEGER_TRACE_ID}, since_s=3600) == []  # too old


def test_rotated_log_files_are_read_before_the_current_one(tmp_path: Path) -> None:
    lines = (FIXTURES / "logs.jsonl").read_text().splitlines()
    (tmp_path / "logs-2024-12-01T00-00-00.000.jsonl").write_text(lines[1] + "\n")
    (tmp_path / "logs.jsonl").write_text(lines[0] + "\n")
    records = FileLogSource(tmp_path / "logs.jsonl").find("demo-1", set(), ALL_TIME_S)
    assert [r.service for r in records] == ["llm-simulator", "provider-proxy"]


def test_the_log_file_is_where_the_stack_writes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXAI_TELEMETRY_DIR", str(tmp_path))
    assert default_log_file() == tmp_path / "logs.jsonl"
    monkeypatch.delenv("EXAI_TELEMETRY_DIR")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "var" / "telemetry").mkdir(parents=True)
    (tmp_path / "var" / "telemetry" / "logs.jsonl").touch()
    assert default_log_file() == Path("var/telemetry/logs.jsonl")


def test_a_missing_log_file_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="EXAI_TELEMETRY_DIR"):
        FileLogSource(tmp_path / "logs.jsonl").find("demo-1", set(), ALL_TIME_S)


def test_ids_that_the_writer_may_escape_are_still_found(tmp_path: Path) -> None:
    odd = 'quote"and\\slash'
    line = (FIXTURES / "logs.jsonl").read_text().splitlines()[0]
    escaped = '"demo-1"'.replace("demo-1", odd.replace("\\", "\\\\").replace('"', '\\"'))
    path = tmp_path / "logs.jsonl"
    path.write_text(line.replace('"demo-1"', escaped) + "\n")
    (record,) = FileLogSource(path).find(odd, set(), ALL_TIME_S)
    assert record.correlation_id == odd


def test_loki_streams_and_structured_metadata_become_log_records() -> None:
    records = parse_loki(fixture_json("loki_query_range.json"))
    assert [(r.service, r.severity) for r in records] == [
        ("provider-proxy", "WARNING"),
        ("ws-gateway", "INFO"),
    ]
    assert all(r.correlation_id == "demo-2" for r in records)
    assert records[1].span_id == "00000000000000aa"  # from structuredMetadata
    assert records[0].attributes["scope_name"] == "provider_proxy.app"
    with pytest.raises(BadResponse):
        parse_loki({"status": "success", "data": {"resultType": "matrix", "result": []}})


def test_queries_quote_the_correlation_id() -> None:
    assert traceql("demo-1") == '{ span.exai.correlation_id = "demo-1" }'
    assert traceql('a"b\\c') == '{ span.exai.correlation_id = "a\\"b\\\\c" }'
    assert logql("demo-1") == '{service_name=~".+"} | exai_correlation_id = "demo-1"'
