"""The `exai` console script. One command today: `exai trace <correlation-id>`.

Exit status: 0 found; 1 nothing carries the ID; 2 bad usage; 3 a trace store or log
source is unreachable or answered nonsense; 4 only log lines, the trace was sampled out;
5 only log lines, the trace may not be stored yet. Every failure is one line on stderr,
never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from exai_cli import jaeger, links, logsource, sampling, tempo
from exai_cli.document import document
from exai_cli.durations import human_duration, parse_duration, parse_go_duration
from exai_cli.errors import BadUsage, ExaiCliError, NotFound
from exai_cli.fetch import display_url
from exai_cli.render import Style, View, render
from exai_cli.search import (
    ENV_JAEGER,
    ENV_LOKI,
    ENV_TEMPO,
    Collected,
    LogSource,
    Sources,
    TraceStore,
    argument_trace_id,
    collect,
)
from exai_cli.tree import DEFAULT_COLLAPSE_AFTER
from exai_cli.types import CORRELATION_ATTRIBUTE, JsonObject, Trace

__all__ = ["build_parser", "human_duration", "main", "parse_duration"]

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
unreachable, 4 only log lines: the trace was sampled out, 5 only log lines: the trace
may not be stored yet. Traces are stored once the collector's tail sampling has decided:
${sampling.ENV_AFTER_ROOT} (default {sampling.DEFAULT_AFTER_ROOT}) after a call's root span,
at most ${sampling.ENV_DECISION_WAIT} (default {sampling.DEFAULT_DECISION_WAIT}) after its
first span; --wait polls until the trace appears.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exai", description="EXAI operator tools: follow a request across every service."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    trace = commands.add_parser(
        "trace",
        help="show every span and log line of a request, by correlation ID or trace ID",
        description=(
            f"Find the trace(s) whose spans carry {CORRELATION_ATTRIBUTE}=<id> (or the trace"
            " with that ID, for 32 hex characters), print a waterfall of every span across"
            " services (durations, status, retries, clock skew, key attributes), then the"
            " request's log lines."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    trace.add_argument("correlation_id", metavar="ID", help="correlation ID, or trace ID")
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
    trace.add_argument(
        "--decision-wait",
        type=parse_go_duration,
        metavar="DURATION",
        help=(
            "the collector's tail-sampling decision_wait (5s, 2m10s): younger log lines"
            f" without a trace mean 'not stored yet'; default ${sampling.ENV_DECISION_WAIT}"
            f" or {sampling.DEFAULT_DECISION_WAIT}"
        ),
    )
    trace.add_argument("--limit", type=int, default=20, help="most traces per search (20)")
    trace.add_argument(
        "--collapse",
        type=int,
        default=DEFAULT_COLLAPSE_AFTER,
        metavar="N",
        help=f"fold more than N same-name spans under one parent ({DEFAULT_COLLAPSE_AFTER})",
    )
    trace.add_argument("--expand", action="store_true", help="draw every span, fold nothing")
    trace.add_argument(
        "--grafana-url",
        help=f"for the trace's link: default ${links.ENV_GRAFANA}, or {links.DEFAULT_GRAFANA_URL}"
        " with Tempo",
    )
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


def _window(args: argparse.Namespace) -> sampling.DecisionWindow:
    def read(name: str, default: str) -> float:
        try:
            return parse_go_duration(os.environ.get(name) or default)
        except argparse.ArgumentTypeError as exc:
            raise BadUsage(f"${name}: {exc}") from exc

    wait = args.decision_wait
    if wait is None:
        wait = read(sampling.ENV_DECISION_WAIT, sampling.DEFAULT_DECISION_WAIT)
    return sampling.DecisionWindow(wait, read(sampling.ENV_AFTER_ROOT, sampling.DEFAULT_AFTER_ROOT))


def _subject(args: argparse.Namespace) -> str:
    prefix = "trace_id or " if argument_trace_id(args) else ""
    return f"{prefix}{CORRELATION_ATTRIBUTE}={args.correlation_id}"


def _not_found(store: TraceStore, args: argparse.Namespace, warnings: list[str]) -> NotFound:
    waited = f" after waiting {human_duration(args.wait)}" if args.wait > 0 else ""
    hint = (
        "; traces are stored a few seconds after the call: try --wait 30"
        if args.wait <= 0
        else "; ordinary calls are sampled (EXAI_TRACE_SAMPLE_PERCENT), failures are always kept"
    )
    also = f" ({'; '.join(warnings)})" if warnings else ""
    subject = _subject(args).replace(f"={args.correlation_id}", f"={args.correlation_id!r}")
    return NotFound(
        f"no trace carries {subject} in {store.label}"
        f" (last {human_duration(args.since)}){waited}{hint}{also}"
    )


def _links(
    args: argparse.Namespace, store: TraceStore, traces: Sequence[Trace]
) -> dict[str, dict[str, str]]:
    """Per trace: where to open it. Grafana when configured (or with Tempo, compose's
    store); Jaeger when the Jaeger read serves its UI (the no-Docker build does not)."""
    if not traces:
        return {}
    grafana = args.grafana_url or os.environ.get(links.ENV_GRAFANA)
    if not grafana and store.kind == "tempo":
        grafana = links.DEFAULT_GRAFANA_URL
    uid = os.environ.get(links.ENV_GRAFANA_TEMPO_UID) or links.DEFAULT_TEMPO_UID
    jaeger_ui = isinstance(store, jaeger.JaegerStore) and store.serves_ui()
    found: dict[str, dict[str, str]] = {}
    for trace in traces:
        own = found.setdefault(trace.trace_id, {})
        if grafana:
            own["Grafana"] = links.grafana_trace_url(display_url(grafana), trace, uid)
        if jaeger_ui:
            own["Jaeger"] = links.jaeger_trace_url(display_url(store.url), trace.trace_id)
    return found


def _truncation(args: argparse.Namespace, found: Collected, source: LogSource | None) -> list[str]:
    notes = []
    if found.traces_truncated:
        notes.append(
            f"--limit {args.limit} reached: more traces may carry this ID"
            " (raise --limit, or narrow --since)"
        )
    if found.logs_truncated and source is not None:
        notes.append(
            f"{source.label} returned as many log lines as it allows: later ones are missing"
        )
    return notes


def trace_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    window = _window(args)
    with contextlib.ExitStack() as stack:
        sources = Sources(args, stack)
        store = sources.trace_store()
        source = sources.log_source(store)
        found = collect(store, source, args, window)
        trace_links = _links(args, store, found.traces)
    traces, logs, warnings = found.traces, found.logs, found.warnings
    if not traces and not logs:
        raise _not_found(store, args, warnings)
    status, code = sampling.TraceStatus.FOUND, 0
    if not traces:
        verdict = sampling.judge(logs, time.time_ns(), window)
        warnings.append(f"{verdict.message} (searched {store.label})")
        status, code = verdict.status, verdict.exit_code
    notes = _truncation(args, found, source)
    for warning in [*warnings, *(f"truncated: {n}" for n in notes)]:
        print(f"exai: warning: {warning}", file=err)
    if args.json:
        doc = document(
            args.correlation_id,
            traces,
            logs,
            trace_store={"kind": store.kind, "url": display_url(store.url)},
            log_source={"kind": source.kind, "location": source.location} if source else None,
            warnings=[*warnings, *notes],
            trace_status=status.value,
            truncated=_truncated(args, found),
            links=trace_links,
        )
        out.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    else:
        view = View(
            collapse_after=None if args.expand or args.collapse <= 0 else args.collapse,
            links=trace_links,
            truncated=notes,
        )
        out.write(render(_subject(args), traces, logs, _style(args, out), view))
    out.flush()
    return code


def _truncated(args: argparse.Namespace, found: Collected) -> JsonObject:
    return {"traces": found.traces_truncated, "logs": found.logs_truncated, "limit": args.limit}


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
