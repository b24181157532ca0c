from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from opentelemetry import context
from pydantic import Field, SecretStr

from exai_telemetry.correlation import with_correlation_id
from exai_telemetry.health import ComponentHealth, Probe, evaluate, overall_status
from exai_telemetry.logs import configure_logging
from exai_telemetry.redaction import SecretRegistry
from exai_telemetry.settings import ServiceSettings, load_settings
from tests.support.telemetry import CapturedTelemetry


def test_log_lines_are_json_in_utc_with_trace_and_correlation_ids(
    captured: CapturedTelemetry, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("svc", "INFO", SecretRegistry(["hunter2-secret"]))
    telemetry, _ = captured.build("svc")
    log = logging.getLogger("exai.test")
    token = context.attach(with_correlation_id("corr-9"))
    try:
        with telemetry.tracer("t").start_as_current_span("op") as span:
            log.info("calling with %s", "hunter2-secret")
            ctx = span.get_span_context()
    finally:
        context.detach(token)
    for handler in list(logging.getLogger().handlers):
        if handler.get_name() == "exai-json":
            logging.getLogger().removeHandler(handler)
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["message"] == "calling with [REDACTED]"
    assert line["trace_id"] == format(ctx.trace_id, "032x")
    assert line["span_id"] == format(ctx.span_id, "016x")
    assert line["correlation_id"] == "corr-9"
    assert line["service"] == "svc"
    assert line["timestamp"].endswith("+00:00")
    assert line["level"] == "INFO"


class PortSettings(ServiceSettings):
    port: int = Field(default=1, gt=0, lt=65536, validation_alias="EXAI_TEST_PORT")
    key: SecretStr | None = Field(default=None, validation_alias="EXAI_TEST_KEY")


def test_bad_setting_stops_start_up_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EXAI_TEST_PORT", "99999")
    monkeypatch.setenv("EXAI_TEST_KEY", "do-not-print-me")
    with pytest.raises(SystemExit) as exc:
        load_settings(PortSettings)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "EXAI_TEST_PORT" in err
    assert "99999" not in err and "do-not-print-me" not in err


def test_bad_log_level_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EXAI_LOG_LEVEL", "LOUD")
    with pytest.raises(SystemExit):
        load_settings(ServiceSettings)
    assert "EXAI_LOG_LEVEL" in capsys.readouterr().err


def test_secret_values_feed_the_redaction_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAI_TEST_KEY", "key-from-env-123")
    assert "key-from-env-123" in load_settings(PortSettings).secret_values()


def test_optional_dependency_down_degrades_required_one_makes_unhealthy() -> None:
    up, down = ComponentHealth(True), ComponentHealth(False)
    opt_down = ComponentHealth(False, required=False)
    assert overall_status({"a": up}) == "healthy"
    assert overall_status({"a": up, "cache": opt_down}) == "degraded"
    assert overall_status({"a": down, "cache": opt_down}) == "unhealthy"


async def test_evaluate_turns_a_raising_or_slow_check_into_down() -> None:
    async def ok() -> ComponentHealth:
        return ComponentHealth(True)

    async def boom() -> ComponentHealth:
        raise ConnectionError("refused")

    report = await evaluate(
        [Probe("db", ok), Probe("cache", boom, required=False)], version="1.2.3"
    )
    body = report.as_json()
    assert body["status"] == "degraded" and report.ready
    assert body["components"]["cache"] == {
        "status": "down",
        "required": False,
        "error": "ConnectionError",
    }
    assert body["version"] == "1.2.3" and body["timestamp_utc"].endswith("+00:00")


def test_settings_are_read_from_their_declared_variables_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Process supervisors set PORT/HOST for every child; they must not move a service.
    monkeypatch.setenv("PORT", "5600")
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    settings = load_settings(PortSettings)
    assert settings.port == 1
    assert settings.host == "127.0.0.1"
    assert settings.log_level == "INFO"
    monkeypatch.setenv("EXAI_TEST_PORT", "8123")
    assert load_settings(PortSettings).port == 8123
    # Python names still work as keyword arguments.
    assert PortSettings(port=9).port == 9


def test_dotenv_file_is_read_by_variable_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("EXAI_TEST_PORT=7001\nPORT=5\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings(PortSettings).port == 7001


def test_debug_level_never_lets_library_payload_logs_through(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("svc", "DEBUG", SecretRegistry())
    try:
        # What aiosqlite / websockets print at DEBUG: statement parameters and frames.
        logging.getLogger("aiosqlite").debug("executing %s", ("user", "PROMPT-TEXT-123"))
        logging.getLogger("websockets.server").debug('< TEXT \'{"op":"hello","token":"t"}\'')
        logging.getLogger("httpx").info("HTTP Request: GET http://x/?token=abc")
        logging.getLogger("exai.app").debug("our own debug line")
    finally:
        for handler in list(logging.getLogger().handlers):
            if handler.get_name() == "exai-json":
                logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(logging.WARNING)
    out = capsys.readouterr().out
    assert "PROMPT-TEXT-123" not in out and '"op"' not in out and "token=abc" not in out
    assert "our own debug line" in out
