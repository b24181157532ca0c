"""Where a request's log lines are: the collector's OTLP-JSON file, or Loki.

- No-Docker stack: the collector's file exporter appends one ``ExportLogsServiceRequest``
  per line to ``$EXAI_TELEMETRY_DIR/logs.jsonl`` (``var/telemetry/logs.jsonl`` for
  ``make run``); rotated files next to it (``logs-<time>.jsonl``) are read too.
- Compose: Loki, which stores OTLP log attributes as structured metadata with dots
  turned into underscores, so the correlation ID is ``exai_correlation_id``:
  ``{service_name=~".+"} | exai_correlation_id = "…"`` over ``/loki/api/v1/query_range``.

Both return :class:`~exai_cli.types.LogRecord` in time order: the records carrying the
correlation ID, plus every record of the given trace IDs (the found traces, and the
argument when it is a trace ID), which finds the lines of a trace that tail sampling
dropped, and lines logged without the correlation attribute.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import httpx

from exai_cli.errors import BadResponse, SourceUnavailable
from exai_cli.fetch import display_url, get_json
from exai_cli.otlp import UNKNOWN_SERVICE, otlp_id, parse_resource_logs
from exai_cli.tempo import quote
from exai_cli.types import CORRELATION_ATTRIBUTE, AttributeValue, LogRecord

DEFAULT_TELEMETRY_DIR = "var/telemetry"
LOG_FILE_NAME = "logs.jsonl"
DEFAULT_LOKI_URL = "http://127.0.0.1:3100"
LOKI_LIMIT = 5000
# IDs made only of these characters appear verbatim in the file's JSON; others may be
# escaped by the writer, so every line is parsed instead of pre-filtered.
_PLAIN = re.compile(r"^[A-Za-z0-9._:/+=@-]+$")
# Loki's names for the OTLP record fields it keeps beside the attributes.
_LOKI_FIELDS = frozenset(
    {
        "service_name",
        "trace_id",
        "span_id",
        "severity_text",
        "severity_number",
        "detected_level",
        "level",
        "flags",
        "observed_timestamp",
    }
)
_LOKI_CORRELATION = CORRELATION_ATTRIBUTE.replace(".", "_")


# The checkout this package runs from when installed editable (`make install`): `make run`
# writes var/ there, so `exai trace` finds the log file from any working directory.
_CHECKOUT = Path(__file__).resolve().parents[2]


def default_log_file() -> Path:
    """$EXAI_TELEMETRY_DIR/logs.jsonl, else var/telemetry/logs.jsonl here or in the checkout."""
    if configured := os.environ.get("EXAI_TELEMETRY_DIR"):
        return Path(configured) / LOG_FILE_NAME
    here = Path(DEFAULT_TELEMETRY_DIR) / LOG_FILE_NAME
    checkout = _CHECKOUT / DEFAULT_TELEMETRY_DIR / LOG_FILE_NAME
    return checkout if not here.exists() and checkout.exists() else here


def _wanted(record: LogRecord, correlation_id: str, trace_ids: Collection[str]) -> bool:
    return record.correlation_id == correlation_id or (
        record.trace_id is not None and record.trace_id in trace_ids
    )


def parse_log_line(line: str) -> list[LogRecord]:
    """One line of the file exporter's output (an ExportLogsServiceRequest)."""
    try:
        payload = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadResponse(f"not a JSON line ({exc.msg})") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("resourceLogs"), list):
        raise BadResponse("a JSON line without resourceLogs")
    return parse_resource_logs(payload["resourceLogs"])


class FileLogSource:
    kind = "file"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = f"log file {path}"
        self.location = str(path)
        self.skipped_lines = 0
        self.truncated = False  # the file is read whole

    def files(self) -> list[Path]:
        rotated = sorted(self.path.parent.glob(f"{self.path.stem}-*{self.path.suffix}"))
        return [*rotated, self.path] if self.path.exists() else rotated

    def find(
        self, correlation_id: str, trace_ids: Collection[str], since_s: float
    ) -> list[LogRecord]:
        files = self.files()
        if not files:
            raise SourceUnavailable(
                f"no log file at {self.path} (the stack writes $EXAI_TELEMETRY_DIR/{LOG_FILE_NAME};"
                " set EXAI_TELEMETRY_DIR or --log-file)"
            )
        needles = [correlation_id, *trace_ids] if _PLAIN.match(correlation_id) else None
        oldest_ns = time.time_ns() - int(since_s * 1e9)
        found: list[LogRecord] = []
        self.skipped_lines = 0
        for path in files:
            with path.open(encoding="utf-8", errors="replace") as lines:
                for line in lines:
                    if needles is not None and not any(n in line for n in needles):
                        continue
                    try:
                        records = parse_log_line(line)
                    except BadResponse:
                        # The writer may be half-way through the last line.
                        self.skipped_lines += 1
                        continue
                    found += (
                        r
                        for r in records
                        if r.time_ns >= oldest_ns and _wanted(r, correlation_id, trace_ids)
                    )
        return sorted(found, key=lambda r: r.time_ns)


def logql(correlation_id: str, trace_ids: Collection[str] = ()) -> str:
    """Lines carrying the correlation ID, or any of the trace IDs (structured metadata)."""
    matches = [f"{_LOKI_CORRELATION} = {quote(correlation_id)}"]
    matches += [f"trace_id = {quote(t)}" for t in sorted(trace_ids)]
    return '{service_name=~".+"} | ' + " or ".join(matches)


def _loki_record(labels: dict[str, Any], timestamp: object, line: object) -> LogRecord:
    if not isinstance(timestamp, str) or not timestamp.isdigit():
        raise BadResponse(f"Loki entry with timestamp {timestamp!r}")
    attributes: dict[str, AttributeValue] = {
        k: str(v) for k, v in labels.items() if k not in _LOKI_FIELDS
    }
    if _LOKI_CORRELATION in attributes:
        attributes[CORRELATION_ATTRIBUTE] = attributes.pop(_LOKI_CORRELATION)
    severity = labels.get("severity_text") or labels.get("detected_level") or labels.get("level")
    return LogRecord(
        time_ns=int(timestamp),
        service=str(labels.get("service_name") or UNKNOWN_SERVICE),
        severity=str(severity or "UNSET").upper(),
        body=str(line),
        trace_id=otlp_id(labels.get("trace_id"), 16),
        span_id=otlp_id(labels.get("span_id"), 8),
        attributes=attributes,
    )


def parse_loki(payload: object) -> list[LogRecord]:
    """A ``query_range`` answer for a log query (``resultType: streams``).

    Entries are ``[ns, line]``, or ``[ns, line, {structuredMetadata, parsed}]`` when
    Loki is asked to categorise labels; both are read.
    """
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict) or data.get("resultType") != "streams":
        raise BadResponse("Loki's answer is not a stream list")
    records = []
    for stream in data.get("result") or []:
        labels = dict(stream.get("stream") or {})
        for entry in stream.get("values") or []:
            extra = entry[2] if len(entry) > 2 and isinstance(entry[2], dict) else {}
            merged = {
                **labels,
                **(extra.get("structuredMetadata") or {}),
                **(extra.get("parsed") or {}),
            }
            records.append(_loki_record(merged, entry[0], entry[1]))
    return sorted(records, key=lambda r: r.time_ns)


class LokiLogSource:
    kind = "loki"

    def __init__(self, http: httpx.Client, url: str, limit: int = LOKI_LIMIT) -> None:
        self._http = http
        self.url = url
        self.limit = limit
        self.label = f"Loki at {display_url(url)}"
        self.location = display_url(url)
        self.skipped_lines = 0
        self.truncated = False

    def find(
        self, correlation_id: str, trace_ids: Collection[str], since_s: float
    ) -> list[LogRecord]:
        end_ns = time.time_ns()
        payload = get_json(
            self._http,
            "/loki/api/v1/query_range",
            {
                "query": logql(correlation_id, trace_ids),
                "start": end_ns - int(since_s * 1e9),
                "end": end_ns,
                "limit": self.limit,
                "direction": "forward",
            },
            source=self.label,
        )
        records = parse_loki(payload)
        # Loki stops at `limit` lines; the oldest come first, so the newest are missing.
        self.truncated = len(records) >= self.limit
        return records


def by_trace(
    records: Iterable[LogRecord], trace_ids: Collection[str]
) -> dict[str | None, list[LogRecord]]:
    """Records grouped by trace ID; None collects those of no found trace."""
    grouped: dict[str | None, list[LogRecord]] = {}
    for record in records:
        key = record.trace_id if record.trace_id in trace_ids else None
        grouped.setdefault(key, []).append(record)
    return grouped
