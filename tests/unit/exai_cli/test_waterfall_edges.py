"""The waterfall where real traces get awkward: clocks that disagree, log lines of several
lines with tracebacks, and calls with hundreds of alike spans."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from exai_cli import search
from exai_cli.document import document
from exai_cli.durations import parse_go_duration
from exai_cli.render import Style, View, render
from exai_cli.sampling import DEFAULT_AFTER_ROOT, DEFAULT_DECISION_WAIT
from exai_cli.types import LogRecord, Span, SpanKind, StatusCode, Trace
from tests.unit.exai_cli.recorded import FOREVER, Route, clean_env, run, serve

PLAIN = Style(colour=False, unicode=True, bar_width=20)
TRACE_ID = "ab" * 16
MS = 1_000_000
T0 = 1_733_011_200_000_000_000


def _span(
    span_id: int,
    parent: int | None,
    name: str,
    start_ms: float,
    end_ms: float,
    *,
    service: str = "ws-gateway",
    kind: SpanKind = SpanKind.INTERNAL,
    error: bool = False,
) -> Span:
    return Span(
        trace_id=TRACE_ID,
        span_id=f"{span_id:016x}",
        parent_span_id=None if parent is None else f"{parent:016x}",
        service=service,
        name=name,
        kind=kind,
        start_ns=T0 + int(start_ms * MS),
        end_ns=T0 + int(end_ms * MS),
        status=StatusCode.ERROR if error else StatusCode.UNSET,
    )


def _line(output: str, fragment: str) -> str:
    (line,) = [x for x in output.splitlines() if fragment in x]
    return line


# --- clock skew --------------------------------------------------------------------------


def _skewed() -> Trace:
    return Trace(
        TRACE_ID,
        (
            _span(1, None, "ws call_tool chat", 0, 300, kind=SpanKind.SERVER),
            _span(2, 1, "POST", 10, 110, kind=SpanKind.CLIENT),
            # The proxy's clock is 120 ms behind: its server span starts before the call.
            _span(3, 2, "POST /v1/chat", -110, -20, service="provider-proxy", kind=SpanKind.SERVER),
            _span(4, 1, "GET", 150, 200, kind=SpanKind.CLIENT),
            # The storage adapter's clock is ahead: its span ends 50 ms after the call's.
            _span(5, 4, "GET /v1/x", 160, 250, service="storage-adapter", kind=SpanKind.SERVER),
            _span(6, 1, "PUT", 210, 260, kind=SpanKind.CLIENT),
            # Closing a few ms after the client is ordinary, not skew.
            _span(7, 6, "PUT /v1/x", 212, 263, service="storage-adapter", kind=SpanKind.SERVER),
        ),
    )


def test_clock_skew_is_shown_with_its_offset_not_hidden() -> None:
    output = render("exai.correlation_id=skew", [_skewed()], [], PLAIN)
    assert "clock skew on 2" in output.splitlines()[2]
    assert "skew -120.0 ms" in _line(output, "POST /v1/chat")
    assert "skew +50.0 ms" in _line(output, "GET /v1/x")
    assert "skew" not in _line(output, "PUT /v1/x")
    assert "skew" not in _line(output, "ws call_tool chat  server")
    # The span stays where its own clock put it: before the root, at the axis' start.
    assert _line(output, "POST /v1/chat").split()[:2] == ["+0", "µs"]
    assert _line(output, "ws call_tool chat  server").split()[:2] == ["+110.0", "ms"]


def test_clock_skew_is_in_the_json_document_and_log_offsets_may_be_negative() -> None:
    trace = _skewed()
    early = LogRecord(T0 - 125 * MS, "provider-proxy", "INFO", "before it all", TRACE_ID)
    doc = document("skew", [trace], [early], trace_store={}, log_source=None, warnings=[])
    skew = {s["name"]: s["skew_ms"] for s in doc["traces"][0]["spans"]}
    assert skew["POST /v1/chat"] == -120.0
    assert skew["GET /v1/x"] == 50.0
    assert skew["PUT /v1/x"] is None and skew["ws call_tool chat"] is None
    output = render("skew", [trace], [early], PLAIN)
    assert _line(output, "before it all").split()[:2] == ["-15.0", "ms"]


# --- multi-line bodies and tracebacks ---------------------------------------------------


TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/app/provider_proxy/app.py", line 176, in chat_completions\n'
    "    answer = await upstream.call(request)\n"
    "provider_proxy.errors.UpstreamTimeout: kimi did not answer in 30 s"
)


def test_multi_line_bodies_and_tracebacks_are_kept_and_indented() -> None:
    records = [
        LogRecord(T0 + 5 * MS, "provider-proxy", "INFO", "config:\n  model: kimi\n  retries: 2\n"),
        LogRecord(
            T0 + 9 * MS,
            "provider-proxy",
            "ERROR",
            "chat completion failed",
            attributes={"exception.stacktrace": TRACEBACK, "exception.type": "UpstreamTimeout"},
        ),
    ]
    lines = render("multi", [], records, PLAIN).splitlines()
    first = next(i for i, x in enumerate(lines) if x.endswith("[-] config:"))
    column = lines[first].index("config:")
    assert lines[first + 1 : first + 3] == [
        " " * column + "  model: kimi",
        " " * column + "  retries: 2",
    ]
    failed = next(i for i, x in enumerate(lines) if x.endswith("[-] chat completion failed"))
    assert lines[failed + 1 :] == [" " * column + t for t in TRACEBACK.splitlines()]
    assert "…" not in "\n".join(lines)


def test_a_traceback_already_in_the_body_is_not_printed_twice() -> None:
    record = LogRecord(
        T0,
        "ws-gateway",
        "ERROR",
        "tool failed\n" + TRACEBACK,
        attributes={"exception.stacktrace": TRACEBACK},
    )
    output = render("once", [], [record], PLAIN)
    assert output.count("Traceback (most recent call last)") == 1


# --- long traces -------------------------------------------------------------------------


def _long() -> Trace:
    """A memory read of 47 turns: 47 GETs (12 of the last ones failed), one store span each."""
    spans = [_span(1, None, "ws call_tool chat", 0, 1000, kind=SpanKind.SERVER)]
    for i in range(47):
        gid = 100 + i
        spans.append(
            _span(gid, 1, "GET", 10 + i * 10, 18 + i * 10, kind=SpanKind.CLIENT, error=i >= 35)
        )
        spans.append(
            _span(
                1000 + i, gid, "GET /v1/turn", 11 + i * 10, 17 + i * 10, service="storage-adapter"
            )
        )
    spans.append(_span(2, 1, "POST", 500, 990, kind=SpanKind.CLIENT))
    return Trace(TRACE_ID, tuple(spans))


def test_more_than_n_alike_siblings_fold_into_one_line_counting_their_errors() -> None:
    output = render("long", [_long()], [], PLAIN)
    waterfall = [x for x in output.splitlines() if re.match(r"^\s*\+\d", x)]
    assert sum(" ├─ GET  client" in x for x in waterfall) == 10
    folded = _line(output, "more `GET` spans")
    assert folded.endswith("├─ … 37 more `GET` spans (12 errors, 37 spans under them)")
    assert folded.split()[:4] == ["+110.0", "ms", "368.0", "ms"]  # from the first folded one
    assert "└─ POST" in _line(output, "POST  client")  # what follows is still drawn
    assert len(waterfall) == 1 + 10 * 2 + 1 + 1
    everything = render("long", [_long()], [], PLAIN, View(collapse_after=None))
    assert "more `GET`" not in everything
    assert sum(bool(re.match(r"^\s*\+\d", x)) for x in everything.splitlines()) == 96


def _jaeger_answer(trace: Trace) -> dict[str, object]:
    spans = [
        {
            "traceID": s.trace_id,
            "spanID": s.span_id,
            "operationName": s.name,
            "references": (
                [{"refType": "CHILD_OF", "spanID": s.parent_span_id}] if s.parent_span_id else []
            ),
            "startTime": s.start_ns // 1000,
            "duration": s.duration_ns // 1000,
            "tags": [{"key": "exai.correlation_id", "type": "string", "value": "long"}]
            + ([{"key": "error", "type": "bool", "value": True}] if s.is_error else []),
            "processID": s.service,
        }
        for s in trace.spans
    ]
    processes = {s.service: {"serviceName": s.service} for s in trace.spans}
    return {"data": [{"traceID": trace.trace_id, "spans": spans, "processes": processes}]}


def test_collapse_and_expand_from_the_command_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_env(monkeypatch)
    answer = _jaeger_answer(_long())
    routes: dict[str, Route] = {
        "/api/services": lambda q: (200, {"data": ["ws-gateway"]}),
        "/api/traces": lambda q: (200, answer),
    }
    with serve(routes) as jaeger:
        argv = ["long", "--jaeger-url", jaeger.url, "--logs", "none", "--since", FOREVER]
        _, folded, _ = run(capsys, *argv)
        _, five, _ = run(capsys, *argv, "--collapse", "5")
        _, expanded, _ = run(capsys, *argv, "--expand")
        _, doc, _ = run(capsys, *argv, "--json")
    assert "… 37 more `GET` spans (12 errors" in folded
    assert "… 42 more `GET` spans (12 errors" in five
    assert "more `GET`" not in expanded and expanded.count("GET /v1/turn") == 47
    assert len(json.loads(doc)["traces"][0]["spans"]) == 96  # the document is never folded
    assert search.POLL_INTERVAL_S > 0


# --- the collector's duration syntax --------------------------------------------------


def test_durations_in_the_collectors_syntax() -> None:
    assert parse_go_duration("5s") == 5
    assert parse_go_duration("300ms") == pytest.approx(0.3)
    assert parse_go_duration("2m10s") == 130
    assert parse_go_duration("1.5h") == 5400
    assert parse_go_duration("0") == 0
    for bad in ("5", "s", "5x", "", "5s 3s", "-5s"):
        with pytest.raises(Exception, match="not a duration"):
            parse_go_duration(bad)


def test_the_default_decision_waits_are_the_collectors() -> None:
    config = (Path(__file__).parents[3] / "otel-collector.yaml").read_text()

    def default(name: str) -> float:
        (text,) = re.findall(rf"\$\{{env:{name}:-([^}}]+)\}}", config)
        return parse_go_duration(text)

    assert parse_go_duration(DEFAULT_DECISION_WAIT) == default("EXAI_TAIL_DECISION_WAIT")
    assert parse_go_duration(DEFAULT_AFTER_ROOT) == default("EXAI_TAIL_DECISION_WAIT_AFTER_ROOT")
