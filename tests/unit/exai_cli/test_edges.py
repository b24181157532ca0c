"""`exai trace` where an operator's question is hardest: a trace not stored yet or sampled
out, a search cut by --limit, a trace ID instead of a correlation ID, and the link to
open the same trace in Grafana or Jaeger. Real HTTP on localhost, recorded answers."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from exai_cli import logsource, search
from tests.unit.exai_cli.conftest import (
    FIXTURES,
    JAEGER_TRACE_ID,
    TEMPO_TRACE_ID,
    fixture_json,
)
from tests.unit.exai_cli.recorded import (
    FOREVER,
    Route,
    clean_env,
    jaeger_routes,
    run,
    serve,
    tempo_routes,
)

# The fixtures' first log line: provider-proxy, demo-1, in the Jaeger fixture's trace.
_LINE = (FIXTURES / "logs.jsonl").read_text().splitlines()[0]
_LINE_TIME = "1733011200060000000"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    monkeypatch.setattr(search, "POLL_INTERVAL_S", 0.05)


def _log_file(tmp_path: Path, age_s: float) -> Path:
    """A log file whose one line (demo-1's) was written `age_s` seconds ago."""
    assert _LINE_TIME in _LINE
    stamp = str(time.time_ns() - int(age_s * 1e9))
    path = tmp_path / "logs.jsonl"
    path.write_text(_LINE.replace(_LINE_TIME, stamp) + "\n")
    return path


def _no_trace_yet() -> dict[str, Route]:
    return jaeger_routes(found_from_poll=10**6)


# --- sampled out, or not stored yet ---------------------------------------------------


def test_fresh_log_lines_without_a_trace_are_not_stored_yet_exit_5(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    log_file = _log_file(tmp_path, age_s=2)
    with serve(_no_trace_yet()) as jaeger:
        code, out, err = run(
            capsys, "demo-1", "--jaeger-url", jaeger.url, "--log-file", str(log_file)
        )
    assert code == 5, err
    assert "log lines of no stored trace (1)" in out
    assert "the trace may not be stored yet: the newest line is 2s old" in err
    assert "tail sampling decides 3s after a call's root span arrives" in err
    assert "sampled out" not in err


def test_the_windows_follow_the_collectors_settings_in_its_own_syntax(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_file = _log_file(tmp_path, age_s=60)
    argv = ["demo-1", "--log-file", str(log_file)]
    with serve(_no_trace_yet()) as jaeger:
        argv += ["--jaeger-url", jaeger.url]
        # A minute after its last line: a call that had ended then would be stored by
        # now, but a call still running is decided only 130 s after its first span.
        code, _, err = run(capsys, *argv)
        assert code == 5, err
        assert "the trace is probably sampled out, but may not be stored yet" in err
        assert "decided up to 130s after its first span (EXAI_TAIL_DECISION_WAIT)" in err
        assert "--wait 80s" in err  # what is left of 130 s + 10 s for the store
        # A collector that decides after 5 s at the latest has decided: sampled out.
        monkeypatch.setenv("EXAI_TAIL_DECISION_WAIT", "5s")
        code, _, err = run(capsys, *argv)
        assert code == 4, err
        assert "the trace was sampled out (not kept by tail sampling" in err
        assert "the newest line is 1m old, past the 5s decision window" in err
        # The flag wins over the environment; Go's compound units read too.
        code, _, err = run(capsys, *argv, "--decision-wait", "2m10s")
        assert code == 5, err
        monkeypatch.setenv("EXAI_TAIL_DECISION_WAIT", "1500ms")
        assert run(capsys, *argv)[0] == 4
        # A longer wait after the root keeps a finished call "not stored yet" for longer.
        monkeypatch.setenv("EXAI_TAIL_DECISION_WAIT", "5m")
        monkeypatch.setenv("EXAI_TAIL_DECISION_WAIT_AFTER_ROOT", "1m")
        code, _, err = run(capsys, *argv)
        assert code == 5 and "the trace may not be stored yet" in err, err
        monkeypatch.setenv("EXAI_TAIL_DECISION_WAIT_AFTER_ROOT", "soon")
        code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert err.startswith("exai: $EXAI_TAIL_DECISION_WAIT_AFTER_ROOT: not a duration: 'soon'")


def test_wait_ends_as_soon_as_a_missing_trace_is_known_to_be_sampled_out(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    log_file = _log_file(tmp_path, age_s=600)  # past the default 130 s window
    with serve(_no_trace_yet()) as jaeger:
        started = time.monotonic()
        code, _, err = run(
            capsys,
            "demo-1",
            "--jaeger-url",
            jaeger.url,
            "--log-file",
            str(log_file),
            "--wait",
            "30",
        )
        elapsed = time.monotonic() - started
    assert code == 4, err
    assert len(jaeger.calls("/api/traces")) == 3  # one poll of three services
    assert elapsed < 10


def test_wait_keeps_polling_while_the_trace_may_still_come(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    log_file = _log_file(tmp_path, age_s=1)
    with serve(_no_trace_yet()) as jaeger:
        code, _, err = run(
            capsys, "demo-1", "--jaeger-url", jaeger.url, "--log-file", str(log_file), "--wait", "1"
        )
    assert code == 5, err
    assert len(jaeger.calls("/api/traces")) >= 3 * 3


def test_json_says_which_it_is(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with serve(_no_trace_yet()) as jaeger:
        argv = ["demo-1", "--jaeger-url", jaeger.url, "--json"]
        code, out, _ = run(capsys, *argv, "--log-file", str(_log_file(tmp_path, age_s=1)))
        assert (code, json.loads(out)["trace_status"]) == (5, "not_stored_yet")
        code, out, _ = run(
            capsys, *argv, "--log-file", str(FIXTURES / "logs.jsonl"), "--since", FOREVER
        )
        assert (code, json.loads(out)["trace_status"]) == (4, "sampled_out")
        routes = jaeger_routes()
        jaeger.routes.update(routes)
        code, out, _ = run(capsys, *argv, "--logs", "none", "--since", FOREVER)
    assert (code, json.loads(out)["trace_status"]) == (0, "found")


# --- truncation -------------------------------------------------------------------------


def _two_traces() -> dict[str, Route]:
    """Jaeger holding two traces with the correlation ID (a client reused it)."""
    second = fixture_json("jaeger_traces.json")
    other = "6c9f0008a9149214e37ac744924ad71d"
    raw = json.dumps(second).replace(JAEGER_TRACE_ID, other)

    def traces(query: dict[str, str]) -> tuple[int, object]:
        both = [fixture_json("jaeger_traces.json")["data"][0], json.loads(raw)["data"][0]]
        return 200, {"data": both[: int(query["limit"])]}

    return {"/api/services": lambda q: (200, {"data": ["ws-gateway"]}), "/api/traces": traces}


def test_a_search_cut_by_limit_says_so_in_text_and_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with serve(_two_traces()) as jaeger:
        argv = ["demo-1", "--jaeger-url", jaeger.url, "--logs", "none", "--since", FOREVER]
        code, out, err = run(capsys, *argv, "--limit", "1")
        assert code == 0, err
        assert "1 trace(s)" in out.splitlines()[0]
        assert out.splitlines()[1] == (
            "TRUNCATED: --limit 1 reached: more traces may carry this ID"
            " (raise --limit, or narrow --since)"
        )
        assert "exai: warning: truncated: --limit 1 reached" in err
        code, out, _ = run(capsys, *argv, "--limit", "1", "--json")
        doc = json.loads(out)
        assert doc["truncated"] == {"traces": True, "logs": False, "limit": 1}
        assert any("--limit 1 reached" in w for w in doc["warnings"])
        # Room for both: nothing cut, nothing said.
        code, out, err = run(capsys, *argv, "--limit", "5")
        assert "2 trace(s)" in out and "TRUNCATED" not in out and "truncated" not in err
        code, out, _ = run(capsys, *argv, "--limit", "5", "--json")
    assert json.loads(out)["truncated"] == {"traces": False, "logs": False, "limit": 5}


def test_tempo_and_loki_limits_are_flagged_too(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    routes = tempo_routes()
    monkeypatch.setattr(logsource, "LOKI_LIMIT", 2)  # the recorded answer has 2 lines
    with serve(routes) as tempo:
        argv = ["demo-2", "--tempo-url", tempo.url, "--loki-url", tempo.url, "--since", FOREVER]
        code, out, _ = run(capsys, *argv, "--limit", "1", "--json")
        (query,) = tempo.calls("/loki/api/v1/query_range")
    assert code == 0
    assert query["limit"] == "2"
    doc = json.loads(out)
    assert doc["truncated"] == {"traces": True, "logs": True, "limit": 1}
    assert f"Loki at {tempo.url} returned as many log lines as it allows" in " ".join(
        doc["warnings"]
    )


# --- a trace ID as the argument ------------------------------------------------------


def test_a_trace_id_finds_the_trace_and_its_log_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    routes: dict[str, Route] = {
        "/api/services": lambda q: (200, {"data": ["ws-gateway"]}),
        # Nothing carries the hex string as a correlation ID ...
        "/api/traces": lambda q: (200, {"data": []}),
        # ... but it is the ID of a stored trace.
        f"/api/traces/{JAEGER_TRACE_ID}": lambda q: (200, fixture_json("jaeger_traces.json")),
    }
    with serve(routes) as jaeger:
        code, out, err = run(
            capsys,
            JAEGER_TRACE_ID.upper(),
            "--jaeger-url",
            jaeger.url,
            "--log-file",
            str(FIXTURES / "logs.jsonl"),
            "--since",
            FOREVER,
        )
    assert code == 0, err
    assert (jaeger.calls("/api/traces")[0]["tags"]) == json.dumps(
        {"exai.correlation_id": JAEGER_TRACE_ID.upper()}
    )
    assert out.startswith(f"trace_id or exai.correlation_id={JAEGER_TRACE_ID.upper()}: 1 trace(s)")
    assert "12 spans, 4 services" in out
    assert "log lines (3)" in out  # every line of the trace, by its trace ID


def test_the_log_lines_of_a_dropped_trace_are_found_by_its_trace_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Jaeger never stored it (404); the log file has its lines, tagged with its trace ID.
    with serve(_no_trace_yet()) as jaeger:
        code, out, err = run(
            capsys,
            JAEGER_TRACE_ID,
            "--jaeger-url",
            jaeger.url,
            "--log-file",
            str(FIXTURES / "logs.jsonl"),
            "--since",
            FOREVER,
        )
        assert len(jaeger.calls(f"/api/traces/{JAEGER_TRACE_ID}")) == 1
    assert code == 4, err
    assert "log lines of no stored trace (3)" in out
    assert "sampled out" in err


def test_loki_is_asked_by_the_trace_id_argument(
    capsys: pytest.CaptureFixture[str],
) -> None:
    routes: dict[str, Route] = {
        "/api/echo": lambda q: (200, "echo"),
        "/api/search": lambda q: (200, {"traces": []}),
        "/loki/api/v1/query_range": lambda q: (200, fixture_json("loki_query_range.json")),
    }
    with serve(routes) as tempo:
        code, out, _ = run(
            capsys,
            TEMPO_TRACE_ID,
            "--tempo-url",
            tempo.url,
            "--loki-url",
            tempo.url,
            "--since",
            FOREVER,
        )
        (query,) = tempo.calls("/loki/api/v1/query_range")
        assert len(tempo.calls(f"/api/traces/{TEMPO_TRACE_ID}")) == 1  # 404 here: not stored
    assert query["query"] == (
        f'{{service_name=~".+"}} | exai_correlation_id = "{TEMPO_TRACE_ID}"'
        f' or trace_id = "{TEMPO_TRACE_ID}"'
    )
    assert code == 4
    assert "log lines of no stored trace (2)" in out


# --- the same trace in a browser -----------------------------------------------------


def _explore(url: str) -> dict[str, object]:
    parts = urlsplit(url)
    (pane,) = json.loads(parse_qs(parts.query)["panes"][0]).values()
    assert isinstance(pane, dict)
    return pane


def test_the_grafana_link_opens_the_trace_in_explore_on_tempo(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXAI_GRAFANA_URL", "https://grafana.example/sub/")
    with serve(jaeger_routes()) as jaeger:
        argv = ["demo-1", "--jaeger-url", jaeger.url, "--logs", "none", "--since", FOREVER]
        code, out, _ = run(capsys, *argv)
        (line,) = [x for x in out.splitlines() if x.startswith("open in ")]
        assert code == 0
        # The Go-module Jaeger has no UI ("/" is not an HTML page): no Jaeger link.
        assert line.startswith("open in Grafana: https://grafana.example/sub/explore?")
        pane = _explore(line.split(": ", 1)[1])
        assert pane["datasource"] == "tempo"
        assert pane["queries"] == [
            {
                "refId": "A",
                "datasource": {"type": "tempo", "uid": "tempo"},
                "queryType": "traceql",
                "query": JAEGER_TRACE_ID,
            }
        ]
        start_ms = 1733011200000
        assert pane["range"] == {
            "from": str(start_ms - 300_000),
            "to": str(start_ms + 1200 + 300_000),
        }
        code, out, _ = run(capsys, *argv, "--json")
    (trace,) = json.loads(out)["traces"]
    assert trace["links"]["grafana"] == line.split(": ", 1)[1]


def test_a_jaeger_with_its_ui_gets_a_jaeger_link_and_tempo_a_grafana_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    routes = jaeger_routes() | {"/": lambda q: (200, "<!doctype html><title>Jaeger UI</title>")}
    with serve(routes, text_type="text/html; charset=utf-8") as jaeger:
        code, out, _ = run(
            capsys, "demo-1", "--jaeger-url", jaeger.url, "--logs", "none", "--since", FOREVER
        )
    assert code == 0
    assert f"open in Jaeger: {jaeger.url}/trace/{JAEGER_TRACE_ID}" in out.splitlines()
    assert "Grafana" not in out
    # Jaeger built without its UI serves a placeholder page there: no link to it.
    placeholder = (
        "<!DOCTYPE html><title>Test Page</title><p>This is a placeholder for the Jaeger UI"
        " home page. If you are seeing this, you are running a binary that was not compiled"
        " with the UI assets"
    )
    routes["/"] = lambda q: (200, placeholder)
    with serve(routes, text_type="text/html; charset=utf-8") as jaeger:
        code, out, _ = run(
            capsys, "demo-1", "--jaeger-url", jaeger.url, "--logs", "none", "--since", FOREVER
        )
    assert code == 0
    assert "open in" not in out
    with serve(tempo_routes(with_loki=False)) as tempo:
        code, out, _ = run(
            capsys, "demo-2", "--tempo-url", tempo.url, "--logs", "none", "--since", FOREVER
        )
    assert code == 0
    # Compose's Grafana, published on the host, when nothing else is configured.
    assert "open in Grafana: http://127.0.0.1:3000/explore?" in out
