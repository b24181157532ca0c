"""Choosing the trace store and log source, and asking them (with `--wait`, until the
answer settles).

The argument is a correlation ID, or a trace ID (what the gateway prints beside it): one
that looks like a trace ID (32 hex characters) is looked up both ways, since a client
may well use a hex string as its correlation ID. Log lines are asked for by the
correlation ID and by every trace ID in play, so the lines of a trace that tail sampling
dropped are found from its trace ID alone.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from exai_cli import jaeger, logsource, tempo
from exai_cli.errors import ExaiCliError, SourceUnavailable
from exai_cli.fetch import new_client
from exai_cli.sampling import DecisionWindow
from exai_cli.types import LogRecord, SearchResult, Trace, looks_like_trace_id, merge_traces

ENV_JAEGER = "EXAI_JAEGER_URL"
ENV_TEMPO = "EXAI_TEMPO_URL"
ENV_LOKI = "EXAI_LOKI_URL"
POLL_INTERVAL_S = 1.0


class TraceStore(Protocol):
    kind: str
    url: str
    label: str

    def probe(self) -> None: ...

    def find(self, correlation_id: str, since_s: float, limit: int = ...) -> SearchResult: ...

    def get(self, trace_id: str) -> Trace | None: ...


class LogSource(Protocol):
    kind: str
    label: str
    location: str
    skipped_lines: int
    truncated: bool

    def find(
        self, correlation_id: str, trace_ids: Collection[str], since_s: float
    ) -> list[LogRecord]: ...


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
            return logsource.LokiLogSource(self._client(url), url, logsource.LOKI_LIMIT)
        return logsource.FileLogSource(self._args.log_file or logsource.default_log_file())


@dataclass
class Collected:
    traces: list[Trace] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    traces_truncated: bool = False
    logs_truncated: bool = False


def argument_trace_id(args: argparse.Namespace) -> str | None:
    text = str(args.correlation_id)
    return text.lower() if looks_like_trace_id(text) else None


def _traces(store: TraceStore, args: argparse.Namespace) -> SearchResult:
    result = store.find(args.correlation_id, args.since, args.limit)
    trace_id = argument_trace_id(args)
    if trace_id is None or any(t.trace_id == trace_id for t in result.traces):
        return result
    trace = store.get(trace_id)
    if trace is None:
        return result
    return SearchResult(merge_traces([*result.traces, trace]), result.truncated)


def _logs(source: LogSource | None, args: argparse.Namespace, found: Collected) -> list[LogRecord]:
    if source is None:
        return []
    trace_ids = {t.trace_id for t in found.traces}
    if (asked := argument_trace_id(args)) is not None:
        trace_ids.add(asked)
    try:
        records = source.find(args.correlation_id, trace_ids, args.since)
    except ExaiCliError as exc:
        found.warnings.append(f"no log lines: {exc}")
        return []
    if source.skipped_lines:
        found.warnings.append(
            f"{source.skipped_lines} unreadable line(s) in {source.label} skipped"
        )
    found.logs_truncated = source.truncated
    return records


def ask(store: TraceStore, source: LogSource | None, args: argparse.Namespace) -> Collected:
    result = _traces(store, args)
    found = Collected(traces=result.traces, traces_truncated=result.truncated)
    found.logs = _logs(source, args, found)
    return found


def collect(
    store: TraceStore,
    source: LogSource | None,
    args: argparse.Namespace,
    window: DecisionWindow,
) -> Collected:
    """Traces and log lines; with --wait, poll until a trace appears and stops growing.

    Logs usually land before the trace (the collector stores a trace only once tail
    sampling has decided), so only a trace ends the wait; one more poll then picks up
    spans and lines still in flight. Log lines alone end it too once the decision
    window has passed since the newest of them: the trace was sampled out, and waiting
    longer would not bring it.
    """
    deadline = time.monotonic() + args.wait
    seen: tuple[int, int] | None = None
    while True:
        found = ask(store, source, args)
        traces, logs = found.traces, found.logs
        size = (sum(len(t.spans) for t in traces), len(logs))
        decided = not traces and logs and not window.is_open(logs, time.time_ns())
        if args.wait <= 0 or time.monotonic() >= deadline or (traces and size == seen) or decided:
            return found
        seen = size if traces else None
        time.sleep(min(POLL_INTERVAL_S, max(deadline - time.monotonic(), 0)))
