"""Redaction gaps (issue 8, point 14): tracebacks, stack traces and pre-formatted
exception text in log lines, a second `?` in a request target, and span status
descriptions. Each test failed before its fix."""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from pydantic import SecretStr

from exai_telemetry.logs import configure_logging
from exai_telemetry.redaction import (
    REDACTED,
    SecretRegistry,
    error_status,
    redact_path,
    redact_url,
)
from exai_telemetry.settings import ServiceSettings
from exai_telemetry.setup import setup_telemetry
from tests.support.telemetry import CapturedTelemetry

SECRET = "sk-gap-" + "q" * 24
# Not a configured secret: only the query-parameter rule can catch it.
QUERY_TOKEN = "unregistered-client-token-9876"


class _SecretSettings(ServiceSettings):
    api_key: SecretStr = SecretStr(SECRET)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """These tests bind JSON lines to capsys's stdout; unbind them afterwards."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in list(root.handlers):
        if handler.get_name() == "exai-json":
            root.removeHandler(handler)
    root.setLevel(level)


def _json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _fail() -> None:
    raise RuntimeError(f"upstream said {SECRET} for GET /mcp?token={QUERY_TOKEN} HTTP/1.0")


# --- stdout JSON lines ------------------------------------------------------------------


def test_a_traceback_on_stdout_is_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("svc", "INFO", SecretRegistry([SECRET]))
    try:
        try:
            _fail()
        except RuntimeError as exc:
            raise ValueError("while handling") from exc
    except ValueError:
        logging.getLogger("exai.test.gaps").exception("call failed")
    out = capsys.readouterr().out
    (line,) = [j for j in _json_lines(out) if j.get("message") == "call failed"]
    assert "upstream said" in line["exc_info"]  # the traceback is there …
    assert SECRET not in out and QUERY_TOKEN not in out  # … without the secrets
    assert f"token={REDACTED}" in line["exc_info"]


def test_stack_info_on_stdout_is_scrubbed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A source line holding a secret shows up in the stack trace.
    module_path = tmp_path / "gap_module.py"
    module_path.write_text(
        "import logging\n\n\ndef emit():\n"
        f"    logging.getLogger('exai.test.gaps').warning('look', stack_info=True)  # {SECRET}\n"
    )
    spec = importlib.util.spec_from_file_location("gap_module", module_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    configure_logging("svc", "INFO", SecretRegistry([SECRET]))
    module.emit()
    out = capsys.readouterr().out
    (line,) = [j for j in _json_lines(out) if j.get("message") == "look"]
    assert "gap_module.py" in line["stack_info"]
    assert SECRET not in out


def test_exception_text_formatted_elsewhere_is_scrubbed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A record whose traceback another formatter already rendered (record.exc_text).
    configure_logging("svc", "INFO", SecretRegistry([SECRET]))
    record = logging.LogRecord("exai.test.gaps", logging.ERROR, __file__, 1, "failed", (), None)
    record.exc_text = f"Traceback …\nRuntimeError: key {SECRET}"
    logging.getLogger("exai.test.gaps").handle(record)
    out = capsys.readouterr().out
    (line,) = [j for j in _json_lines(out) if j.get("message") == "failed"]
    assert line["exc_info"].endswith(f"RuntimeError: key {REDACTED}")
    assert SECRET not in out


def test_a_message_assembled_from_its_arguments_is_scrubbed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Neither the format nor an argument holds `?token=…`; the message does.
    configure_logging("svc", "INFO", SecretRegistry([SECRET]))
    logging.getLogger("exai.test.gaps").warning("GET %s?%s=%s", "/mcp", "token", QUERY_TOKEN)
    logging.getLogger("exai.test.gaps").warning("extra", extra={"detail": f"key={SECRET}"})
    out = capsys.readouterr().out
    assert QUERY_TOKEN not in out and SECRET not in out
    assert f"GET /mcp?token={REDACTED}" in out


def test_every_library_record_is_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    # What websockets logs when it cannot parse a request line: an ERROR from its own
    # logger (the gateway hands it `ws_gateway.websockets`) with the line in the cause.
    configure_logging("svc", "INFO", SecretRegistry([SECRET]))
    for name in ("websockets.server", "ws_gateway.websockets"):
        try:
            try:
                raise ValueError(f"unsupported protocol: GET /?token={QUERY_TOKEN} HTTP/1.0")
            except ValueError as cause:
                raise RuntimeError("did not receive a valid HTTP request") from cause
        except RuntimeError:
            logging.getLogger(name).error("opening handshake failed", exc_info=True)
    out = capsys.readouterr().out
    assert out.count("opening handshake failed") == 2
    assert QUERY_TOKEN not in out


# --- OTLP log records -------------------------------------------------------------------


@pytest.fixture
def otlp_logs() -> Iterator[InMemoryLogRecordExporter]:
    exporter = InMemoryLogRecordExporter()
    telemetry = setup_telemetry(
        "gap-svc",
        "t",
        _SecretSettings(),
        span_exporter=InMemorySpanExporter(),
        log_exporter=exporter,
        install_global=False,
    )
    yield exporter
    telemetry.shutdown()


def test_otlp_bodies_and_extra_attributes_are_scrubbed(
    otlp_logs: InMemoryLogRecordExporter,
) -> None:
    log = logging.getLogger("exai.test.gaps")
    log.warning("GET %s?%s=%s", "/mcp", "token", QUERY_TOKEN)
    log.warning("extra", extra={"detail": f"the key is {SECRET}"})
    records = [r.log_record for r in otlp_logs.get_finished_logs()]
    dump = repr([(r.body, dict(r.attributes or {})) for r in records])
    assert QUERY_TOKEN not in dump and SECRET not in dump
    assert f"GET /mcp?token={REDACTED}" in dump


# --- request targets and URLs -------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        f"/mcp?x=1?token={QUERY_TOKEN}",
        f"/mcp??token={QUERY_TOKEN}",
        f"/mcp?token={QUERY_TOKEN}?x=1",
        f"/mcp?a=1&b=2?access_token={QUERY_TOKEN}",
        f"/mcp?x=1;token={QUERY_TOKEN}",
        f"/mcp?TOKEN={QUERY_TOKEN}",
        f"/mcp?to%6Ben={QUERY_TOKEN}",
        f"/mcp?x=1#access_token={QUERY_TOKEN}",
    ],
)
def test_redact_path_catches_every_sensitive_parameter(target: str) -> None:
    redacted = redact_path(target)
    assert QUERY_TOKEN not in redacted
    assert redacted.startswith("/mcp?")
    assert REDACTED in redacted


def test_redact_path_leaves_the_rest_as_it_was() -> None:
    assert redact_path("/v1/conversations/a%2Fb?limit=5&x=?y") == (
        "/v1/conversations/a%2Fb?limit=5&x=?y"
    )
    assert redact_path("/mcp?token=abc") == f"/mcp?token={REDACTED}"
    assert redact_path("/health") == "/health"


def test_redact_url_catches_a_second_question_mark() -> None:
    url = f"https://api.example/v1?x=1?key={QUERY_TOKEN}"
    assert QUERY_TOKEN not in redact_url(url)
    assert redact_url(url).startswith("https://api.example/v1?")


# --- span status ----------------------------------------------------------------------------


def test_span_status_descriptions_are_scrubbed_on_export(captured: CapturedTelemetry) -> None:
    telemetry, _ = captured.build("svc", _SecretSettings())
    with telemetry.tracer("t").start_as_current_span("call") as span:
        span.set_status(StatusCode.ERROR, f"upstream said {SECRET} at /x?token={QUERY_TOKEN}")
    with pytest.raises(RuntimeError), telemetry.tracer("t").start_as_current_span("auto"):
        # The SDK writes `RuntimeError: <message>` into the status itself.
        _fail()
    for exported in captured.spans():
        description = exported.status.description or ""
        assert exported.status.status_code is StatusCode.ERROR
        assert SECRET not in description and QUERY_TOKEN not in description
        assert REDACTED in description
        events = repr([dict(e.attributes or {}) for e in exported.events])
        assert SECRET not in events and QUERY_TOKEN not in events


def test_error_status_scrubs_what_it_is_given() -> None:
    status = error_status(f"401 from upstream: Bearer {QUERY_TOKEN} ?api_key={QUERY_TOKEN}")
    assert status.status_code is StatusCode.ERROR
    assert QUERY_TOKEN not in (status.description or "")
    registry = SecretRegistry([SECRET])
    assert error_status(f"said {SECRET}", registry).description == f"said {REDACTED}"
    # Bounded: a huge upstream body does not become a huge span.
    assert len(error_status("x" * 10_000).description or "") <= 1024
