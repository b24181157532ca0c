"""Logs: JSON lines on stdout and OTLP log records, both tied to the active trace.

- stdout: one JSON object per line in UTC with `trace_id`, `span_id`, `correlation_id`
  (what `docker compose logs` and the process supervisor show);
- OTLP (:class:`OtlpLogHandler`): the same records to the collector, with the trace
  context on the record itself and the correlation ID as attribute `exai.correlation_id`,
  so Loki (compose) and `exai trace` (no-Docker) find a request's log lines.

Both paths scrub every record, whoever logged it (our modules, uvicorn, websockets —
which quotes a request line it cannot parse, query string included, in a traceback):
registered secret values, bearer credentials and sensitive query parameters go from the
message, its arguments, extra fields, tracebacks (`exc_info`, `exc_text`) and
`stack_info`.
"""

from __future__ import annotations

import copy
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from opentelemetry._logs import LoggerProvider
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from pythonjsonlogger.json import JsonFormatter

from exai_telemetry.correlation import CORRELATION_ATTRIBUTE, current_correlation_id
from exai_telemetry.redaction import SecretRegistry, scrub_any

_HANDLER_NAME = "exai-json"
_OTLP_HANDLER_NAME = "exai-otlp"
# Record fields the stdout filter adds; on OTLP records the trace context is the
# record's own and the correlation ID is `exai.correlation_id`.
_STDOUT_ONLY_FIELDS = ("trace_id", "span_id", "correlation_id", "service")

# Libraries whose DEBUG/INFO output carries payloads: SQL parameters (message content),
# WebSocket frames (the hello token, prompts), request URLs. They stay at WARNING even
# when EXAI_LOG_LEVEL=DEBUG; our own modules log what matters, redacted.
QUIET_LIBRARIES = (
    "aiosqlite",
    "asyncpg",
    "sqlalchemy",
    "httpcore",
    "httpx",
    "hpack",
    "urllib3",
    "websockets",
    "redis",
    "openai",
    "multipart",
    "supabase",
    "postgrest",
)


class TraceContextFilter(logging.Filter):
    """Adds the active trace, span and correlation IDs; scrubs registered secrets."""

    def __init__(self, service_name: str, registry: SecretRegistry) -> None:
        super().__init__()
        self._service_name = service_name
        self._registry = registry

    def filter(self, record: logging.LogRecord) -> bool:
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = format(span_context.trace_id, "032x")
            record.span_id = format(span_context.span_id, "016x")
        else:
            record.trace_id = None
            record.span_id = None
        record.correlation_id = current_correlation_id()
        record.service = self._service_name
        if isinstance(record.msg, str):
            record.msg = self._registry.scrub(record.msg)
        if record.args:
            record.args = scrub_any(record.args, self._registry)
        return True


class UtcJsonFormatter(JsonFormatter):
    """One JSON object per record; every field scrubbed as the last step, so nothing
    formatted here (the message, a traceback, a stack, an extra field) escapes it."""

    def __init__(self, *args: Any, registry: SecretRegistry, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._registry = registry

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {k: scrub_any(v, self._registry) for k, v in log_data.items() if v is not None}

    def serialize_log_record(self, log_data: dict[str, Any]) -> str:
        # Objects the encoder turns into text (str() of an extra field) were not strings
        # when the fields were scrubbed.
        return self._registry.scrub(super().serialize_log_record(log_data))


def configure_logging(service_name: str, level: str, registry: SecretRegistry) -> None:
    """Route the root logger to stdout as JSON; idempotent (tests call it repeatedly)."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(TraceContextFilter(service_name, registry))
    handler.setFormatter(
        UtcJsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(service)s "
            "%(trace_id)s %(span_id)s %(correlation_id)s",
            rename_fields={"asctime": "timestamp", "levelname": "level", "name": "logger"},
            registry=registry,
        )
    )
    root.addHandler(handler)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    # uvicorn's access log repeats what the HTTP server spans already record, and its
    # request line may carry query strings.
    logging.getLogger("uvicorn.access").disabled = True


class OtlpLogHandler(LoggingHandler):
    """Sends log records to the OpenTelemetry LoggerProvider (OTLP to the collector).

    Works on a copy of each record, so the stdout handler's fields never leak in and
    the original record is left as other handlers expect it.
    """

    def __init__(self, logger_provider: LoggerProvider, registry: SecretRegistry) -> None:
        super().__init__(logger_provider=logger_provider)
        self._registry = registry

    def emit(self, record: logging.LogRecord) -> None:
        otlp_record = copy.copy(record)
        for name in _STDOUT_ONLY_FIELDS:
            otlp_record.__dict__.pop(name, None)
        # The body as it will read: a secret can be assembled from a harmless format
        # and harmless arguments.
        try:
            body = otlp_record.getMessage()
        except Exception:  # a bad format: the handler would fail the same way
            body = str(otlp_record.msg)
        otlp_record.msg = self._registry.scrub(body)
        otlp_record.args = None
        # Extra fields become attributes.
        for name, value in list(otlp_record.__dict__.items()):
            if isinstance(value, str) and name != "msg":
                otlp_record.__dict__[name] = self._registry.scrub(value)
        correlation_id = current_correlation_id()
        if correlation_id is not None:
            otlp_record.__dict__[CORRELATION_ATTRIBUTE] = correlation_id
        if otlp_record.exc_info and otlp_record.exc_info[0] is not None:
            # The handler would format the traceback itself, unscrubbed.
            exc_type, exc, tb = otlp_record.exc_info
            otlp_record.__dict__["exception.type"] = exc_type.__name__
            otlp_record.__dict__["exception.message"] = self._registry.scrub(str(exc))
            otlp_record.__dict__["exception.stacktrace"] = self._registry.scrub(
                "".join(traceback.format_exception(exc_type, exc, tb))
            )
            otlp_record.exc_info = None
        otlp_record.exc_text = None
        super().emit(otlp_record)


def attach_otlp_logs(logger_provider: LoggerProvider, level: str, registry: SecretRegistry) -> None:
    """Add (or replace) the OTLP handler on the root logger; idempotent."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _OTLP_HANDLER_NAME:
            root.removeHandler(handler)
    handler = OtlpLogHandler(logger_provider, registry)
    handler.set_name(_OTLP_HANDLER_NAME)
    handler.setLevel(level.upper())
    root.addHandler(handler)


def detach_otlp_logs() -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _OTLP_HANDLER_NAME:
            root.removeHandler(handler)
