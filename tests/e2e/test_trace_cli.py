"""End-to-end: `exai trace <correlation-id>` (the real console script) against the
running no-Docker stack's Jaeger and the collector's log file.

One chat call through the gateway whose Kimi attempts are all rate-limited: a trace
that tail sampling always keeps (retries, error), spans from all four services, three
attempt spans, and log lines from the proxy and the simulator.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.e2e.helpers import (
    JAEGER,
    PROXY,
    GatewaySession,
    Jaeger,
    Simulator,
    eventually,
    span_services,
)
from tests.support.stack import ROOT, RunningStack

pytestmark = pytest.mark.e2e

EXAI = Path(sys.executable).with_name("exai")
KIMI_MODEL = "kimi-k2-0905-preview"
SERVICES = {"ws-gateway", "provider-proxy", "storage-adapter", "llm-simulator"}
GRAFANA = "https://grafana.e2e.example"


def exai(
    stack: RunningStack, *args: str, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    assert EXAI.exists(), f"{EXAI} missing: the package's console script is not installed"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("EXAI_TEMPO_URL", "EXAI_LOKI_URL", "FORCE_COLOR")
    }
    env |= {
        "EXAI_JAEGER_URL": JAEGER,
        # Where the stack's collector writes logs.jsonl (make run: var/telemetry).
        "EXAI_TELEMETRY_DIR": str(stack.var / "telemetry"),
        "NO_COLOR": "1",
        # Where the operator's browser finds Grafana: the answer links the trace there.
        "EXAI_GRAFANA_URL": GRAFANA,
    }
    return subprocess.run(
        [str(EXAI), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout_s,
    )


def _kimi_answers(provider_token: str) -> bool:
    """True once a plain Kimi call succeeds: its circuit is closed again after earlier tests."""
    response = httpx.post(
        f"{PROXY}/v1/chat/completions",
        json={"model": KIMI_MODEL, "messages": [{"role": "user", "content": "warm up"}]},
        headers={"Authorization": f"Bearer {provider_token}"},
        timeout=30,
    )
    return response.status_code == 200


def _until_log_lines(stack: RunningStack, correlation_id: str) -> list[tuple[float, int, str]]:
    """`exai trace` asked again and again until it finds something (exit other than 1)."""
    started = time.monotonic()
    answers: list[tuple[float, int, str]] = []
    while time.monotonic() - started < 20:
        run = exai(stack, "trace", correlation_id, timeout_s=30)
        answers.append((round(time.monotonic() - started, 2), run.returncode, run.stderr))
        if run.returncode != 1:
            break
    return answers


async def test_exai_trace_shows_every_span_retries_and_log_lines_of_a_call(
    stack: RunningStack, simulator: Simulator, jaeger: Jaeger, internal_tokens: dict[str, str]
) -> None:
    eventually(lambda: _kimi_answers(internal_tokens["EXAI_PROVIDER_TOKEN"]), timeout_s=60)
    correlation_id = f"e2e-exai-trace-{uuid.uuid4()}"
    simulator.set_fault("rate_limit", 1.0, provider="kimi", retry_after_s=0)
    try:
        async with GatewaySession.open(stack.ws_token) as session:
            result = await session.call(
                "chat",
                {
                    "prompt": "trace me",
                    "model": KIMI_MODEL,
                    "continuation_id": f"conv-{uuid.uuid4().hex[:12]}",
                },
                correlation_id,
            )
    finally:
        simulator.clear_faults()
    assert result.frame["op"] == "error", result.frame
    assert result.frame["error"]["code"] == "PROVIDER_ERROR"

    # Right after the call its log lines are written (within ~2.5 s: export delay, batch,
    # file flush) while its trace is not: tail sampling decides 3 s after the root span
    # arrives, and the store gets it a batch later. Meanwhile `exai trace` shows the lines
    # and says the trace may not be stored yet (exit 5), not that it was sampled out.
    answers = _until_log_lines(stack, correlation_id)
    code, stderr = answers[-1][1:]
    assert code == 5, answers
    assert "the trace may not be stored yet" in stderr and "sampled out" not in stderr

    # The machine-readable answer first: it is what the assertions can be exact about.
    run = exai(stack, "trace", correlation_id, "--wait", "60", "--json")
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    doc = json.loads(run.stdout)
    assert doc["correlation_id"] == correlation_id
    assert doc["trace_store"]["kind"] == "jaeger"
    (trace,) = doc["traces"]
    spans = trace["spans"]
    assert SERVICES <= set(trace["services"]), trace["services"]

    # Every span Jaeger stored for the call is in the answer, once.
    (stored,) = jaeger.traces_by_correlation_id(correlation_id)
    assert trace["trace_id"] == stored["traceID"]
    assert sorted(s["span_id"] for s in spans) == sorted(span_services(stored))
    by_id = {s["span_id"]: s for s in spans}
    root = spans[0]
    assert (root["name"], root["service"], root["depth"]) == ("ws call_tool chat", "ws-gateway", 0)
    assert root["status"] == "error"
    # Each retry is its own child span of the proxy's chat span, and reached the simulator.
    attempts = sorted(
        (s for s in spans if s["name"].startswith("attempt ")), key=lambda s: s["name"]
    )
    assert [a["name"] for a in attempts] == ["attempt 1", "attempt 2", "attempt 3"]
    assert len({a["parent_span_id"] for a in attempts}) == 1
    chat = by_id[attempts[0]["parent_span_id"]]
    assert chat["service"] == "provider-proxy" and chat["name"].startswith("chat ")
    simulator_spans = [
        s for s in spans if s["service"] == "llm-simulator" and s["kind"] == "server"
    ]
    assert len(simulator_spans) == 3
    proxy_server = next(
        s for s in spans if s["service"] == "provider-proxy" and s["kind"] == "server"
    )
    assert proxy_server["attributes"]["exai.provider.retries"] == 2

    # The call's log lines, from the collector's file, tied to its spans.
    logs = doc["logs"]
    assert doc["log_source"] == {
        "kind": "file",
        "location": str(stack.var / "telemetry" / "logs.jsonl"),
    }
    assert logs, f"no log lines for the call; stderr: {run.stderr}"
    for record in logs:
        assert record["trace_id"] == trace["trace_id"], record
        assert record["span_id"] in by_id, record
    bodies = [(r["service"], r["body"]) for r in logs]
    retried = [b for s, b in bodies if s == "provider-proxy" and "failed (rate_limited)" in b]
    assert [b.split(" failed")[0] for b in retried] == ["kimi attempt 1", "kimi attempt 2"], bodies
    injected = [b for s, b in bodies if s == "llm-simulator" and "injecting fault rate_limit" in b]
    assert len(injected) == 3, bodies

    # The waterfall a person reads: the same spans and lines, no colour (NO_COLOR).
    run = exai(stack, "trace", correlation_id)
    assert run.returncode == 0, run.stderr
    text = run.stdout
    assert "\x1b[" not in text
    waterfall, _, log_part = text.partition("log lines (")
    # One line per span, each starting with its offset ("+21.0 ms"); log lines come after.
    span_lines = [line for line in waterfall.splitlines() if re.match(r"^\s*\+\d", line)]
    assert len(span_lines) == len(spans)
    for service in SERVICES:
        assert any(service in line for line in span_lines), service
    (root_line,) = [line for line in span_lines if "ws call_tool chat" in line]
    assert "ERROR" in root_line
    assert any("attempt 3" in line and "rate_limit" in line for line in span_lines)
    assert any("retries=2" in line for line in span_lines)
    assert log_part.startswith(f"{len(logs)})")
    assert "kimi attempt 1 failed (rate_limited)" in log_part

    # The same trace in a browser: Grafana's Explore on Tempo. This Jaeger build has no
    # web UI, so no Jaeger link is offered.
    (link,) = [line for line in text.splitlines() if line.startswith("open in ")]
    assert link.startswith(f"open in Grafana: {GRAFANA}/explore?")
    (pane,) = json.loads(parse_qs(urlsplit(link.split(": ", 1)[1]).query)["panes"][0]).values()
    assert pane["queries"][0]["query"] == trace["trace_id"]
    assert trace["links"] == {"grafana": link.split(": ", 1)[1]}
    assert doc["trace_status"] == "found"
    assert doc["truncated"] == {"traces": False, "logs": False, "limit": 20}

    # The trace ID (what the gateway answers beside the correlation ID) works as the
    # argument too, with the same spans and log lines.
    run = exai(stack, "trace", trace["trace_id"], "--json")
    assert run.returncode == 0, run.stderr
    by_trace_id = json.loads(run.stdout)
    assert [t["trace_id"] for t in by_trace_id["traces"]] == [trace["trace_id"]]
    assert len(by_trace_id["traces"][0]["spans"]) == len(spans)
    assert sorted(r["body"] for r in by_trace_id["logs"]) == sorted(r["body"] for r in logs)

    # --limit cuts nothing here (one trace), and says so only when it does.
    assert "TRUNCATED" not in text


def test_exai_trace_of_an_unknown_id_fails_with_one_line(stack: RunningStack) -> None:
    run = exai(stack, "trace", f"e2e-nobody-{uuid.uuid4()}")
    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("exai: no trace carries")
