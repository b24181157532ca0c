"""`exai trace` end to end against recorded Jaeger, Tempo and Loki answers served over
real HTTP on localhost: store choice, polling, exit codes, one-line failures, colour."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from exai_cli import main as cli
from exai_cli import search
from tests.unit.exai_cli.conftest import FIXTURES, JAEGER_TRACE_ID, TEMPO_TRACE_ID
from tests.unit.exai_cli.recorded import (
    FOREVER,
    Route,
    clean_env,
    closed_port_url,
    jaeger_routes,
    run,
    serve,
    tempo_routes,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    monkeypatch.setattr(search, "POLL_INTERVAL_S", 0.05)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return run(capsys, *argv)


def test_jaeger_every_service_searched_by_the_correlation_tag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with serve(jaeger_routes()) as jaeger:
        code, out, err = _run(
            capsys,
            "demo-1",
            "--jaeger-url",
            jaeger.url,
            "--log-file",
            str(FIXTURES / "logs.jsonl"),
            "--since",
            FOREVER,
        )
    assert code == 0, err
    searches = jaeger.calls("/api/traces")
    assert sorted(q["service"] for q in searches) == ["jaeger", "provider-proxy", "ws-gateway"]
    assert all(json.loads(q["tags"]) == {"exai.correlation_id": "demo-1"} for q in searches)
    assert all(int(q["end"]) - int(q["start"]) == 36500 * 86400 * 1_000_000 for q in searches)
    assert f"trace {JAEGER_TRACE_ID}" in out
    assert out.count(f"trace {JAEGER_TRACE_ID}") == 1  # found twice, shown once
    assert "12 spans, 4 services" in out
    assert "log lines (3)" in out
    assert "\x1b[" not in out  # not a terminal
    assert (
        err
        == "exai: warning: 1 unreadable line(s) in log file "
        + str(FIXTURES / "logs.jsonl")
        + " skipped\n"
    )


def test_json_for_scripts(capsys: pytest.CaptureFixture[str]) -> None:
    with serve(jaeger_routes()) as jaeger:
        code, out, _ = _run(
            capsys,
            "demo-1",
            "--json",
            "--jaeger-url",
            jaeger.url,
            "--log-file",
            str(FIXTURES / "logs.jsonl"),
            "--since",
            FOREVER,
        )
    assert code == 0
    doc = json.loads(out)
    assert doc["correlation_id"] == "demo-1"
    assert doc["trace_store"] == {"kind": "jaeger", "url": jaeger.url}
    assert doc["log_source"]["kind"] == "file"
    assert [t["trace_id"] for t in doc["traces"]] == [JAEGER_TRACE_ID]
    assert len(doc["traces"][0]["spans"]) == 12
    assert len(doc["logs"]) == 3
    assert doc["warnings"] == [
        f"1 unreadable line(s) in log file {FIXTURES / 'logs.jsonl'} skipped"
    ]


def test_tempo_and_loki_when_only_tempo_is_configured(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    routes = tempo_routes()
    with serve(routes) as tempo:
        monkeypatch.setenv("EXAI_TEMPO_URL", tempo.url)
        monkeypatch.setenv("EXAI_LOKI_URL", tempo.url)
        code, out, err = _run(capsys, "demo-2", "--since", FOREVER)
    assert code == 0, err
    (search,) = tempo.calls("/api/search")
    assert search["q"] == '{ span.exai.correlation_id = "demo-2" }'
    assert int(search["end"]) - int(search["start"]) >= 36500 * 86400
    (logs,) = tempo.calls("/loki/api/v1/query_range")
    # By the correlation ID, and by the found trace's ID (lines logged without the ID).
    assert logs["query"] == (
        f'{{service_name=~".+"}} | exai_correlation_id = "demo-2" or trace_id = "{TEMPO_TRACE_ID}"'
    )
    assert logs["direction"] == "forward"
    assert f"trace {TEMPO_TRACE_ID}" in out
    assert "5 spans, 3 services, 4 failed" in out
    assert "chat completion failed: kimi circuit is open" in out


def test_wait_polls_until_the_trace_is_stored(capsys: pytest.CaptureFixture[str]) -> None:
    with serve(jaeger_routes(found_from_poll=4)) as jaeger:
        code, out, err = _run(
            capsys, "demo-1", "--jaeger-url", jaeger.url, "--logs", "none", "--wait", "20"
        )
    assert code == 0, err
    assert "12 spans" in out
    # 3 services per poll: nothing for 3 polls, then found, then one more to settle.
    assert len(jaeger.calls("/api/traces")) == 3 * 5


def test_nothing_found_is_exit_1_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with serve(jaeger_routes(found_from_poll=10**6)) as jaeger:
        code, out, err = _run(
            capsys, "nobody", "--jaeger-url", jaeger.url, "--log-file", str(FIXTURES / "logs.jsonl")
        )
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(
        f"exai: no trace carries exai.correlation_id='nobody' in Jaeger at {jaeger.url}"
    )
    assert "(last 1h)" in err and "--wait" in err


def test_an_empty_jaeger_is_nothing_found_not_an_unreachable_store(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Jaeger v2 with nothing stored yet (a stack that just started) answers "data": null.
    routes: dict[str, Route] = {
        "/api/services": lambda q: (200, {"data": None, "total": 0}),
        "/api/traces": lambda q: (200, {"data": None}),
    }
    with serve(routes) as jaeger:
        code, out, err = _run(
            capsys, "early", "--jaeger-url", jaeger.url, "--log-file", str(FIXTURES / "logs.jsonl")
        )
    assert (code, out) == (1, ""), err
    assert err.startswith(
        f"exai: no trace carries exai.correlation_id='early' in Jaeger at {jaeger.url}"
    )


def test_log_lines_alone_are_shown_and_exit_4_when_the_trace_was_sampled_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with serve(jaeger_routes(found_from_poll=10**6)) as jaeger:
        code, out, err = _run(
            capsys,
            "demo-1",
            "--jaeger-url",
            jaeger.url,
            "--log-file",
            str(FIXTURES / "logs.jsonl"),
            "--since",
            FOREVER,
        )
    # The lines are from 2024: long past any decision window, so tail sampling dropped it.
    assert code == 4
    assert "log lines of no stored trace (2)" in out
    assert "only log lines found: the trace was sampled out (not kept by tail sampling" in err
    assert f"searched Jaeger at {jaeger.url}" in err


def test_a_missing_log_file_is_a_warning_not_a_failure(
    capsys: pytest.CaptureFixture[str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXAI_TELEMETRY_DIR", str(tmp_path))
    with serve(jaeger_routes()) as jaeger:
        code, out, err = _run(capsys, "demo-1", "--jaeger-url", jaeger.url, "--since", FOREVER)
    assert code == 0
    assert "12 spans" in out
    assert f"no log lines: no log file at {tmp_path / 'logs.jsonl'}" in err


def test_unreachable_stores_are_exit_3_with_one_line_and_no_credentials(
    capsys: pytest.CaptureFixture[str],
) -> None:
    closed = closed_port_url()
    with_password = closed.replace("http://", "http://admin:hunter2@")
    code, out, err = _run(capsys, "x", "--jaeger-url", with_password, "--tempo-url", closed)
    assert code == 3
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"exai: no trace store answered: Jaeger at {closed} is unreachable")
    assert f"Tempo at {closed} is unreachable" in err
    assert "hunter2" not in err and "admin" not in err
    assert "Traceback" not in err


def test_a_store_answering_nonsense_is_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    routes: dict[str, Route] = {
        "/api/services": lambda q: (200, {"data": ["ws-gateway"]}),
        "/api/traces": lambda q: (500, "<html>upstream broke</html>"),
    }
    with serve(routes) as jaeger:
        code, _, err = _run(capsys, "x", "--backend", "jaeger", "--jaeger-url", jaeger.url)
    assert code == 3
    assert "answered HTTP 500 to /api/traces: <html>upstream broke</html>" in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_on_a_terminal_unless_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert cli._colour("auto", _Terminal()) is True
    assert cli._colour("auto", io.StringIO()) is False
    assert cli._colour("never", _Terminal()) is False
    assert cli._colour("always", io.StringIO()) is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert cli._colour("auto", _Terminal()) is False
    monkeypatch.setenv("NO_COLOR", "")  # present but empty: no effect (no-color.org)
    assert cli._colour("auto", _Terminal()) is True
    monkeypatch.setenv("TERM", "dumb")
    assert cli._colour("auto", _Terminal()) is False


def test_durations_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.parse_duration("90") == 90
    assert cli.parse_duration("15m") == 900
    assert cli.parse_duration("1.5h") == 5400
    assert [cli.human_duration(s) for s in (3600, 90, 120, 86400 * 2, 0.5)] == [
        "1h",
        "90s",
        "2m",
        "2d",
        "0.5s",
    ]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["trace", "x", "--since", "soon"])
    assert exit_info.value.code == 2
    assert cli.main([]) == 2
    capsys.readouterr()
