"""The `exai` console script. One command today: `exai trace <correlation-id>`.

Exit status: 0 found; 1 nothing carries the correlation ID; 2 bad usage; 3 a trace
store or log source is unreachable or answered nonsense. Every failure is one line on
stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Protocol, TextIO

import httpx

from exai_cli import jaeger, logsource, tempo
from exai_cli.document import document
from exai_cli.errors import ExaiCliError, NotFound, SourceUnavailable
from exai_cli.fetch import display_url, new_client
from exai_cli.render import Style, render
from exai_cli.types import CORRELATION_ATTRIBUTE, LogRecord, Trace

ENV_JAEGER = "EXAI_JAEGER_URL"
ENV_TEMPO = "EXAI_TEMPO_URL"
ENV_LOKI = "EXAI_LOKI_URL"
POLL_INTERVAL_S = 1.0
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

EPILOG = f"""\
where it looks:
  no-Docker stack (make run): Jaeger at ${ENV_JAEGER} (default {jaeger.DEFAULT_URL}) and
    the collector's log file $EXAI_TELEMETRY_DIR/{logsource.LOG_FILE_NAME}
    (default {logsource.DEFAULT_TELEMETRY_DIR}/{logsource.LOG_FILE_NAME}, from the repo root)
  compose: Tempo at ${ENV_TEMPO} (default {tempo.DEFAULT_URL}) and Loki at ${ENV_LOKI}
    (default {logsource.DEFAULT_LOKI_URL}); neither port is published, so inside the
    network: docker compose exec ws-gateway exai trace <id> --tempo-url http://tempo:3200
    --loki-url http://loki:3100
  --backend auto uses Tempo when only ${ENV_TEMPO} is set, else Jaeger, else Tempo.

exit status: 0 found, 1 nothing found, 2 bad usage, 3 trace store or log source
unreachable. Traces are stored a few seconds after a call (the collector's tail
sampling decides then); --wait polls until the trace appears.
"""


class TraceStore(Protocol):
    kind: str
    url: str
    label: str

    def probe(self) -> None: ...

    def find(self, correlation_id: str, since_s: float, limit: int = ...) -> list[Trace]: ...


class LogSource(Protocol):
    kind: str
    label: str
    location: str
    skipped_lines: int

    def find(
        self, correlation_id: str, trace_ids: Collection[str], since_s: float
    ) -> list[LogRecord]: ...


def parse_duration(text: str) -> float:
    """`90`, `90s`, `15m`, `1h`, `2d` → seconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 15m, 1h, 2d)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def human_duration(seconds: float) -> str:
    """The largest whole unit: 3600 → `1h`, 90 → `90s`."""
    for unit in ("d", "h", "m"):
        if seconds >= _UNIT_S[unit] and seconds % _UNIT_S[unit] == 0:
            return f"{seconds / _UNIT_S[unit]:g}{unit}"
    return f"{seconds:g}s"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exai", description="EXAI operator tools: follow a request across every service."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    trace = commands.add_parser(
        "trace",
        help="show every span and log line of a request, by correlation ID",
        description=(
            f"Find the trace(s) whose spans carry {CORRELATION_ATTRIBUTE}=<id>, print a "
            "waterfall of every span across services (durations, status, retries, key "
            "attributes), then the request's log lines."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    trace.add_argument("correlation_id", metavar="CORRELATION_ID")
    trace.add_argument("--backend", choices=("auto", "jaeger", "tempo"), default="auto")
    trace.add_argument("--jaeger-url", help=f"default ${ENV_JAEGER} or {jaeger.DEFAULT_URL}")
    trace.add_argument("--tempo-url", help=f"default ${ENV_TEMPO} or {tempo.DEFAULT_URL}")
    trace.add_argument(
        "--logs",
        choices=("auto", "file", "loki", "none"),
        default="auto",
        help="where to read log lines: auto = Loki with Tempo, the file with Jaeger",
    )
    trace.add_argument(
        "--log-file",
        type=Path,
        help="default $EXAI_TELEMETRY_DIR/logs.jsonl or var/telemetry/logs.jsonl",
    )
    trace.add_argument("--loki-url", help=f"default ${ENV_LOKI} or {logsource.DEFAULT_LOKI_URL}")
    trace.add_argument(
        "--since",
        type=parse_duration,
        default=parse_duration("1h"),
        metavar="DURATION",
        help="how far back to search (30m, 6h, 2d; default 1h)",
    )
    trace.add_argument(
        "--wait",
        type=parse_duration,
        default=0.0,
        metavar="SECONDS",
        help="poll until the trace appears, for up to this long (default: ask once)",
    )
    trace.add_argument("--limit", type=int, default=20, help="most traces per search (20)")
    trace.add_argument("--json", action="store_true", help="print a JSON document instead")
    trace.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="auto: only on a terminal, and never with NO_COLOR set",
    )
    trace.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per HTTP request (default 10)"
    )
    return parser


def _colour(choice: str, stream: TextIO) -> bool:
    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


def _style(args: argparse.Namespace, stream: TextIO) -> Style:
    columns = shutil.get_terminal_size((120, 24)).columns
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
    return Style(
        colour=_colour(args.color, stream),
        unicode=encoding.startswith("utf"),
        bar_width=max(16, min(48, columns // 4)),
    )


class Sources:
    """The trace store and log source chosen from flags and environment."""

    def __init__(self, args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
        self._args = args
        self._stack = stack

    def _client(self, url: str) -> httpx.Client:
        return self._stack.enter_context(new_client(url, self._args.timeout))

    def _jaeger(self) -> jaeger.JaegerStore:
        url = self._args.jaeger_url or os.environ.get(ENV_JAEGER) or jaeger.DEFAULT_URL
        return jaeger.JaegerStore(self._client(url), url)

    def _tempo(self) -> tempo.TempoStore:
        url = self._args.tempo_url or os.environ.get(ENV_TEMPO) or tempo.DEFAULT_URL
        return tempo.TempoStore(self._client(url), url)

    def trace_store(self) -> TraceStore:
        args = self._args
        if args.backend == "jaeger":
            return self._jaeger()
        if args.backend == "tempo":
            return self._tempo()
        jaeger_set = bool(args.jaeger_url or os.environ.get(ENV_JAEGER))
        tempo_set = bool(args.tempo_url or os.environ.get(ENV_TEMPO))
        order: list[Callable[[], TraceStore]] = (
            [self._tempo, self._jaeger]
            if tempo_set and not jaeger_set
            else [self._jaeger, self._tempo]
        )
        reasons = []
        for make in order:
            store = make()
            try:
                store.probe()
            except ExaiCliError as exc:
                reasons.append(str(exc))
                continue
            return store
        raise SourceUnavailable("no trace store answered: " + "; ".join(reasons))

    def log_source(self, store: TraceStore) -> LogSource | None:
        choice = self._args.logs
        if choice == "auto":
            choice = "loki" if store.kind == "tempo" else "file"
        if choice == "none":
            return None
        if choice == "loki":
            url = self._args.loki_url or os.environ.get(ENV_LOKI) or logsource.DEFAULT_LOKI_URL
            return logsource.LokiLogSource(self._client(url), url)
        return logsource.FileLogSource(self._args.log_file or logsource.default_log_file())


def _find_logs(
    source: LogSource | None, args: argparse.Namespace, traces: list[Trace], warnings: list[str]
) -> list[LogRecord]:
    if source is None:
        return []
    trace_ids = {t.trace_id for t in traces}
    try:
        records = source.find(args.correlation_id, trace_ids, args.since)
    except ExaiCliError as exc:
        warnings.append(f"no log lines: {exc}")
        return []
    if source.skipped_lines:
        warnings.append(f"{source.skipped_lines} unreadable line(s) in {source.label} skipped")
    return records


def collect(
    store: TraceStore, source: LogSource | None, args: argparse.Namespace
) -> tuple[list[Trace], list[LogRecord], list[str]]:
    """Traces and log lines; with --wait, poll until a trace appears and stops growing.

    Logs usually land before the trace (the collector stores a trace only once tail
    sampling has decided), so only a trace ends the wait; one more poll then picks up
    spans and lines still in flight.
    """
    deadline = time.monotonic() + args.wait
    seen: tuple[int, int] | None = None
    while True:
        warnings: list[str] = []
        traces = store.find(args.correlation_id, args.since, args.limit)
        logs = _find_logs(source, args, traces, warnings)
        size = (sum(len(t.spans) for t in traces), len(logs))
        if args.wait <= 0 or time.monotonic() >= deadline or (traces and size == seen):
            return traces, logs, warnings
        seen = size if traces else None
        time.sleep(min(POLL_INTERVAL_S, max(deadline - time.monotonic(), 0)))


def _not_found(store: TraceStore, args: argparse.Namespace, warnings: list[str]) -> NotFound:
    waited = f" after waiting {human_duration(args.wait)}" if args.wait > 0 else ""
    hint = (
        "; traces are stored a few seconds after the call: try --wait 30"
        if args.wait <= 0
        else "; ordinary calls are sampled (EXAI_TRACE_SAMPLE_PERCENT), failures are always kept"
    )
    also = f" ({'; '.join(warnings)})" if warnings else ""
    return NotFound(
        f"no trace carries {CORRELATION_ATTRIBUTE}={args.correlation_id!r} in {store.label}"
        f" (last {human_duration(args.since)}){waited}{hint}{also}"
    )


def trace_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with contextlib.ExitStack() as stack:
        sources = Sources(args, stack)
        store = sources.trace_store()
        source = sources.log_source(store)
        traces, logs, warnings = collect(store, source, args)
    if not traces and not logs:
        raise _not_found(store, args, warnings)
    if not traces:
        warnings.append(
            f"no trace stored in {store.label}; showing log lines only (the trace may have"
            " been sampled out, or not be stored yet: --wait)"
        )
    for warning in warnings:
        print(f"exai: warning: {warning}", file=err)
    if args.json:
        doc = document(
            args.correlation_id,
            traces,
            logs,
            trace_store={"kind": store.kind, "url": display_url(store.url)},
            log_source={"kind": source.kind, "location": source.location} if source else None,
            warnings=warnings,
        )
        out.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    else:
        out.write(render(args.correlation_id, traces, logs, _style(args, out)))
    out.flush()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return trace_command(args, sys.stdout, sys.stderr)
    except ExaiCliError as exc:
        print(f"exai: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `exai trace … | head`: the reader left; nothing more to say.
        # Point stdout at devnull so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
