"""The waterfall: one line per span, as a tree, on one time axis, errors and retries
visible; the log lines after it; and the `--json` document with the same content."""

from __future__ import annotations

import json
import re

from exai_cli.document import document
from exai_cli.jaeger import parse_jaeger_traces
from exai_cli.logsource import FileLogSource
from exai_cli.render import Style, bar, duration, render
from exai_cli.summary import details
from exai_cli.tempo import parse_trace
from exai_cli.tree import span_rows
from exai_cli.types import AttributeValue, LogRecord, Span, SpanKind, StatusCode, Trace
from tests.unit.exai_cli.conftest import ALL_TIME_S, FIXTURES, JAEGER_TRACE_ID, fixture_json

PLAIN = Style(colour=False, unicode=True, bar_width=30)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _retried() -> tuple[Trace, list[LogRecord]]:
    (trace,) = parse_jaeger_traces(fixture_json("jaeger_traces.json"))
    logs = FileLogSource(FIXTURES / "logs.jsonl").find("demo-1", {trace.trace_id}, ALL_TIME_S)
    return trace, logs


def _span_line(output: str, fragment: str) -> str:
    """The one waterfall line containing `fragment` (log lines left out)."""
    waterfall = output.split("log lines")[0]
    (line,) = [line for line in waterfall.splitlines() if fragment in line]
    return line


def test_every_span_is_one_line_in_tree_order_with_its_service() -> None:
    trace, logs = _retried()
    output = render("demo-1", [trace], logs, PLAIN)
    rows = [r.span.name for r in span_rows(trace)]
    assert rows == [
        "ws call_tool chat",
        "GET",
        "GET /v1/conversations/{continuation_id}",
        "POST",
        "POST /v1/chat/completions",
        "chat kimi-k2-0905-preview",
        "attempt 1",
        "POST",
        "POST /v1/chat/completions",
        "attempt 2",
        "POST",
        "POST /v1/chat/completions",
    ]
    for service in ("ws-gateway", "storage-adapter", "provider-proxy", "llm-simulator"):
        assert service in output
    # Both attempts are children of the chat span: the retry is visible as a sibling.
    assert "├─ attempt 1" in _span_line(output, "attempt 1")
    assert "└─ attempt 2" in _span_line(output, "attempt 2")
    assert "│  └─ GET /v1/conversations/{continuation_id}" in output


def test_a_span_line_shows_offset_duration_bar_kind_and_key_attributes() -> None:
    trace, _ = _retried()
    output = render("demo-1", [trace], [], PLAIN)
    root = _span_line(output, "ws call_tool chat  server")
    assert root.split()[:3] == ["+0", "µs", "1.20"]
    assert "▕" + "█" * 30 + "▏" in root  # the root spans the whole axis
    attempt2 = _span_line(output, "attempt 2")
    assert "+110.0 ms" in attempt2 and "1.06 s" in attempt2
    assert "▕  " + "█" * 28 + "▏" in attempt2  # starts 110 ms into 1.2 s
    chat = _span_line(output, "chat kimi-k2-0905-preview")
    assert "kimi kimi-k2-0905-preview tokens in=12 out=40" in chat
    assert "retries=1" in chat
    assert "retries=1" in _span_line(output, "POST /v1/chat/completions  server  200  retries")
    assert "fault=rate_limit" in _span_line(output, "429  fault")
    storage_call = _span_line(output, "127.0.0.1:8091")
    # Host and path of a client call; never its query string.
    assert "/v1/conversations/conv-7 200" in storage_call and "limit=20" not in output
    assert "cache=hit" in output
    assert "outcome=ok" in root


def test_a_failed_span_says_error_and_why_under_its_line() -> None:
    trace, _ = _retried()
    lines = render("demo-1", [trace], [], PLAIN).splitlines()
    (i,) = [n for n, line in enumerate(lines) if "attempt 1" in line]
    assert "ERROR" in lines[i]
    assert "attempt=1 rate_limit (rate_limit)" in lines[i]
    assert lines[i + 1].strip().endswith("! kimi answered 429 Too Many Requests")
    assert lines[i + 2].strip().endswith("! UpstreamRateLimited: retry after 0.05 s")
    assert "1 failed" in lines[2]
    assert sum("ERROR" in line for line in lines) == 1


def test_circuit_state_and_orphans_from_a_tempo_trace() -> None:
    trace = parse_trace(fixture_json("tempo_trace.json"))
    assert trace is not None
    output = render("demo-2", [trace], [], PLAIN)
    assert "circuit=open" in _span_line(output, "POST /v1/chat/completions")
    assert "! CircuitOpen: kimi circuit is open" in output
    orphan = _span_line(output, "GET /v1/conversations")
    assert "(parent span not stored)" in orphan
    assert "storage-adapter" in orphan


def test_log_lines_follow_the_trace_in_time_order_with_their_span() -> None:
    trace, logs = _retried()
    output = render("demo-1", [trace], logs, PLAIN)
    tail = output[output.index("log lines (3)") :].splitlines()[1:]
    assert [line.split()[0] for line in tail] == ["+16.0", "+22.5", "+60.0"]
    assert "WARN   ws-gateway" in tail[0]
    assert "[chat kimi-k2-0905-preview] kimi attempt 1 failed (rate_limit)" in tail[2]
    assert "[POST /v1/chat/completions] injecting fault rate_limit" in tail[1]


def test_log_lines_without_a_stored_trace_are_still_shown() -> None:
    _, logs = _retried()
    output = render("demo-1", [], logs, PLAIN)
    assert "0 trace(s), 3 log line(s)" in output
    assert "log lines of no stored trace (3)" in output
    assert "2024-12-01T00:00:00.060Z  INFO   provider-proxy  [-] kimi attempt 1" in output


def test_colour_only_when_asked_and_ascii_when_the_terminal_cannot_do_better() -> None:
    trace, logs = _retried()
    plain = render("demo-1", [trace], logs, PLAIN)
    assert "\x1b[" not in plain
    coloured = render("demo-1", [trace], logs, Style(colour=True, bar_width=30))
    assert "\x1b[1;31mattempt 1\x1b[0m" in coloured
    assert ANSI.sub("", coloured) == plain
    ascii_only = render("demo-1", [trace], logs, Style(unicode=False, bar_width=30))
    assert ascii_only.isascii()
    assert "|- attempt 1" in ascii_only


def test_bars_and_durations() -> None:
    style = Style(bar_width=10)
    assert bar(0, 100, 100, style) == "█" * 10
    assert bar(50, 1, 100, style) == " " * 5 + "█" + " " * 4  # never invisible
    assert bar(100, 0, 100, style) == " " * 9 + "█"  # an instant at the very end
    assert bar(0, 0, 0, style) == "█" + " " * 9
    assert duration(420_000) == "420 µs"
    assert duration(15_000_000) == "15.0 ms"
    assert duration(2_614_000_000) == "2.61 s"


def test_the_json_document_has_traces_spans_in_tree_order_and_logs() -> None:
    trace, logs = _retried()
    doc = document(
        "demo-1",
        [trace],
        logs,
        trace_store={"kind": "jaeger", "url": "http://127.0.0.1:16686"},
        log_source={"kind": "file", "location": "var/telemetry/logs.jsonl"},
        warnings=[],
    )
    doc = json.loads(json.dumps(doc))  # serialisable as is
    (t,) = doc["traces"]
    assert t["trace_id"] == JAEGER_TRACE_ID
    assert t["services"] == ["ws-gateway", "storage-adapter", "provider-proxy", "llm-simulator"]
    assert t["span_count"] == 12 and t["error_count"] == 1
    assert [(s["depth"], s["name"]) for s in t["spans"][:3]] == [
        (0, "ws call_tool chat"),
        (1, "GET"),
        (2, "GET /v1/conversations/{continuation_id}"),
    ]
    attempt = next(s for s in t["spans"] if s["name"] == "attempt 1")
    assert attempt["status"] == "error"
    assert attempt["kind"] == "internal"
    assert attempt["attributes"]["exai.retry.reason"] == "rate_limit"
    assert attempt["offset_ms"] == 21.0 and attempt["duration_ms"] == 39.0
    assert [log["span_name"] for log in doc["logs"]] == [
        "ws call_tool chat",
        "POST /v1/chat/completions",
        "chat kimi-k2-0905-preview",
    ]
    assert doc["logs"][2]["attributes"]["exai.correlation_id"] == "demo-1"


def test_error_type_is_shown_only_when_it_says_more_than_the_status_code() -> None:
    def texts(attributes: dict[str, AttributeValue]) -> list[str]:
        span = Span(
            trace_id="1" * 32,
            span_id="2" * 16,
            parent_span_id=None,
            service="ws-gateway",
            name="POST",
            kind=SpanKind.CLIENT,
            start_ns=0,
            end_ns=1,
            status=StatusCode.ERROR,
            attributes=attributes,
        )
        return [d.text for d in details(span)]

    assert texts({"http.response.status_code": 502, "error.type": "502"}) == ["502"]
    assert texts({"error.type": "ConnectError"}) == ["error.type=ConnectError"]
