"""JSON log lines in UTC, each carrying `trace_id`, `span_id` and `correlation_id`."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

from exai_telemetry.correlation import current_correlation_id
from exai_telemetry.redaction import SecretRegistry, scrub_any

_HANDLER_NAME = "exai-json"

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
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in log_data.items() if v is not None}


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
        )
    )
    root.addHandler(handler)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    # uvicorn's access log repeats what the HTTP server spans already record, and its
    # request line may carry query strings.
    logging.getLogger("uvicorn.access").disabled = True
