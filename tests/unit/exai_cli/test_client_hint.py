"""The gateway CLI client (`python -m ws_gateway.cli`) prints how to follow its call:
an `exai trace` command line that works when pasted, and the TraceQL for Grafana; never
the Jaeger UI link the no-Docker build cannot serve."""

from __future__ import annotations

import shlex

from exai_cli.main import build_parser
from ws_gateway.cli import follow_hint


def _command(hint: str) -> list[str]:
    (line,) = [line for line in hint.splitlines() if line.startswith("Follow it")]
    return shlex.split(line.split(": ", 1)[1])


def test_the_hint_is_an_exai_trace_command_that_parses() -> None:
    hint = follow_hint("my-first-call", "5b8efff798038103d269b633813fc60c")
    assert "correlation_id=my-first-call trace_id=5b8efff798038103d269b633813fc60c" in hint
    argv = _command(hint)
    assert argv[0].endswith("exai")
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.correlation_id, args.wait) == ("trace", "my-first-call", 30)
    assert "16686" not in hint and "Jaeger" not in hint


def test_an_awkward_correlation_id_survives_the_shell_and_traceql() -> None:
    awkward = 'it\'s "quoted" $HOME'
    hint = follow_hint(awkward, None)
    assert build_parser().parse_args(_command(hint)[1:]).correlation_id == awkward
    assert 'TraceQL { span.exai.correlation_id = "it\'s \\"quoted\\" $HOME" }' in hint
    assert "trace_id" not in hint
