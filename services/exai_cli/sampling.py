"""Why a request has log lines but no trace: sampled out, or not stored yet.

The collector keeps a trace only once tail sampling has decided: a few seconds after the
trace's root span arrives (``EXAI_TAIL_DECISION_WAIT_AFTER_ROOT``), and at the latest
``decision_wait`` after its first span (``EXAI_TAIL_DECISION_WAIT``: the bound for a
call still running, or one whose root span was lost). Both are read from the variables
the collector reads. Log lines are exported at once. So for a while after a call its log
lines exist and its trace does not; after that a missing trace means tail sampling
dropped it. The newest log line stands for the latest the call was known to be running;
the windows are measured from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from exai_cli.durations import human_duration
from exai_cli.types import LogRecord

ENV_DECISION_WAIT = "EXAI_TAIL_DECISION_WAIT"
ENV_AFTER_ROOT = "EXAI_TAIL_DECISION_WAIT_AFTER_ROOT"
# The collector's defaults (otel-collector.yaml, `${env:…:-…}`); a unit test keeps them equal.
DEFAULT_DECISION_WAIT = "130s"
DEFAULT_AFTER_ROOT = "3s"
# After the decision: the services' span export delay (at most 2 s), the collector's
# batch timeout (1 s) and the store's indexing; generous, since a wrong "sampled out"
# sends the operator looking for a sampling policy instead of waiting a few seconds.
STORE_ALLOWANCE_S = 10.0

EXIT_SAMPLED_OUT = 4
EXIT_NOT_STORED_YET = 5


class TraceStatus(StrEnum):
    FOUND = "found"
    NOT_STORED_YET = "not_stored_yet"
    SAMPLED_OUT = "sampled_out"


@dataclass(frozen=True)
class DecisionWindow:
    decision_wait_s: float
    after_root_s: float = 3.0  # the collector's default (DEFAULT_AFTER_ROOT)
    allowance_s: float = STORE_ALLOWANCE_S

    @property
    def seconds(self) -> float:
        """The longest a trace can take to be stored, from its last log line."""
        return self.decision_wait_s + self.allowance_s

    @property
    def finished_call_s(self) -> float:
        """How long a call that had ended by its last log line takes to be stored."""
        return min(self.after_root_s, self.decision_wait_s) + self.allowance_s

    def is_open(self, logs: Sequence[LogRecord], now_ns: int) -> bool:
        """True while the newest log line is younger than the window: the trace may come."""
        newest = max((r.time_ns for r in logs), default=None)
        return newest is not None and now_ns - newest < self.seconds * 1e9


@dataclass(frozen=True)
class Verdict:
    status: TraceStatus
    message: str
    exit_code: int


def _age(seconds: float) -> str:
    """Roughly how old: `0.4s`, `12s`, `3m`, `5h`, `370d` (rounded down)."""
    if seconds < 1:
        return f"{max(seconds, 0):.1f}s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def judge(logs: Sequence[LogRecord], now_ns: int, window: DecisionWindow) -> Verdict:
    """The verdict on log lines found without any trace (`logs` is not empty)."""
    age_s = (now_ns - max(r.time_ns for r in logs)) / 1e9
    wait = human_duration(window.decision_wait_s)
    after_root = human_duration(window.after_root_s)
    if not window.is_open(logs, now_ns):
        return Verdict(
            TraceStatus.SAMPLED_OUT,
            f"only log lines found: the trace was sampled out (not kept by tail sampling; the"
            f" newest line is {_age(age_s)} old, past the {wait} decision window). Ordinary"
            " calls are kept at EXAI_TRACE_SAMPLE_PERCENT; errors, slow calls and retries"
            " always are",
            EXIT_SAMPLED_OUT,
        )
    left = f"--wait {human_duration(math.ceil(window.seconds - age_s))}"
    if age_s < window.finished_call_s:
        message = (
            f"only log lines found, and the trace may not be stored yet: the newest line is"
            f" {_age(age_s)} old; tail sampling decides {after_root} after a call's root span"
            f" arrives ({ENV_AFTER_ROOT}), and the store needs up to"
            f" {_age(window.allowance_s)} more: run again in a moment, or use {left}"
        )
    else:
        message = (
            f"only log lines found: the trace is probably sampled out, but may not be stored"
            f" yet: the newest line is {_age(age_s)} old, long enough for a call that had"
            f" ended then, but a call still running (or whose root span was lost) is decided"
            f" up to {wait} after its first span ({ENV_DECISION_WAIT}): to be sure, {left}"
        )
    return Verdict(TraceStatus.NOT_STORED_YET, message, EXIT_NOT_STORED_YET)
