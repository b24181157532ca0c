"""The check loops: each check on its own schedule, one root span and one count per run,
and one log line per change of state (not one per failed check: a dead gateway would
otherwise log four lines a minute for as long as it is down).

A check never ends its loop: whatever it raises is a failed check (an unexpected
exception is one with reason ``internal``; its traceback goes to the DEBUG log). Checks
start right away and then run every interval (measured from one start to the next; a
check that overruns its interval is followed by the next at once).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context
from opentelemetry.context import Context
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.trace import SpanKind, StatusCode

from exai_canary.errors import CheckFailed, GatewayUnhealthy, ProtocolViolation
from exai_canary.probe import ToolCall, call_tool
from exai_canary.settings import CanarySettings
from exai_canary.telemetry import (
    CHECK,
    GATEWAY_TRACE_ID,
    INSTRUMENTATION_NAME,
    CanaryMetrics,
    CheckName,
    CheckOutcome,
    span_name,
)
from exai_telemetry import names
from exai_telemetry.correlation import with_correlation_id
from exai_telemetry.setup import Telemetry

logger = logging.getLogger(__name__)

CHAT_PROMPT = "Reply with the single word OK."
CORRELATION_PREFIX = "canary-"


def verify_status(frame: Mapping[str, Any]) -> None:
    """A `status` answer is a success unless the gateway says it cannot serve calls
    (a required dependency down: `unhealthy`); `degraded` (no conversation memory)
    still answers chats."""
    metadata = frame.get("metadata")
    status = metadata.get("status") if isinstance(metadata, dict) else None
    if status == "unhealthy":
        raise GatewayUnhealthy("the gateway reports status unhealthy")
    if status not in ("healthy", "degraded"):
        raise ProtocolViolation("a status answer without a known status")


def verify_chat(frame: Mapping[str, Any]) -> None:
    outputs = frame.get("outputs")
    if not isinstance(outputs, list) or not outputs:
        raise ProtocolViolation("a chat answer without outputs")


@dataclass(frozen=True)
class Check:
    name: CheckName
    tool: str
    arguments: Mapping[str, Any]
    interval_s: float
    timeout_s: float
    verify: Callable[[Mapping[str, Any]], None]


def checks_for(settings: CanarySettings) -> list[Check]:
    checks = [Check("status", "status", {}, settings.interval_s, settings.timeout_s, verify_status)]
    if settings.chat_model is not None:
        arguments = {"prompt": CHAT_PROMPT, "model": settings.chat_model, "temperature": 0}
        checks.append(
            Check(
                "chat",
                "chat",
                arguments,
                settings.chat_interval_s,
                settings.chat_timeout_s,
                verify_chat,
            )
        )
    return checks


@dataclass(frozen=True)
class Result:
    outcome: CheckOutcome
    reason: str | None  # error.type of a failure
    detail: str
    duration_s: float
    correlation_id: str


@dataclass
class CheckState:
    """What a check's loop last saw; read by the health endpoint."""

    last: Result | None = None
    failures_in_a_row: int = 0


Probe = Callable[[ToolCall, float], Awaitable[dict[str, Any]]]


@dataclass
class Canary:
    settings: CanarySettings
    telemetry: Telemetry
    probe: Probe = call_tool
    clock: Callable[[], float] = time.time
    checks: list[Check] = field(init=False)
    states: dict[CheckName, CheckState] = field(init=False)
    last_success: dict[str, float] = field(init=False, default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.checks = checks_for(self.settings)
        self.states = {check.name: CheckState() for check in self.checks}
        self.metrics = CanaryMetrics(
            self.telemetry.meter(INSTRUMENTATION_NAME),
            [check.name for check in self.checks],
            self.last_success,
        )
        self._tracer = self.telemetry.tracer(INSTRUMENTATION_NAME)
        token = self.settings.client_token()
        assert token is not None  # CanarySettings refuses to load without one
        self._client_id, self._token = token

    # --- the loops ----------------------------------------------------------------

    def start(self) -> None:
        logger.info(
            "canary checking %s as client %s: %s",
            self.settings.gateway_url,
            self._client_id,
            ", ".join(f"{c.name} every {c.interval_s:g}s" for c in self.checks),
        )
        for check in self.checks:
            self._tasks.append(asyncio.create_task(self._loop(check), name=f"canary {check.name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not any(task.done() for task in self._tasks)

    async def _loop(self, check: Check) -> None:
        while True:
            started = time.monotonic()
            await self.run_check(check)
            await asyncio.sleep(max(0.0, started + check.interval_s - time.monotonic()))

    # --- one check ----------------------------------------------------------------

    async def run_check(self, check: Check) -> Result:
        """Run `check` once: span, metrics, state; never raises (but CancelledError)."""
        correlation_id = f"{CORRELATION_PREFIX}{uuid.uuid4()}"
        # A root of its own, with the correlation ID in baggage (so on the span and in
        # the log lines), exactly what the gateway's call span will carry.
        token = context.attach(with_correlation_id(correlation_id, Context()))
        started = time.perf_counter()
        try:
            with self._tracer.start_as_current_span(
                span_name(check.name),
                kind=SpanKind.INTERNAL,
                attributes={CHECK: check.name, names.TOOL: check.tool},
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                call = ToolCall(
                    self.settings.gateway_url,
                    self._token.get_secret_value(),
                    check.tool,
                    check.arguments,
                    correlation_id,
                )
                reason: str | None = None
                try:
                    frame = await self.probe(call, check.timeout_s)
                    trace_id = frame.get("trace_id")
                    if isinstance(trace_id, str) and span.is_recording():
                        span.set_attribute(GATEWAY_TRACE_ID, trace_id[:32])
                    check.verify(frame)
                    detail = "ok"
                except CheckFailed as exc:
                    reason, detail = exc.reason, exc.detail
                except Exception as exc:  # a bug here must not stop the checks
                    reason, detail = "internal", f"{type(exc).__name__}: {exc}"
                    logger.debug("canary %s check raised", check.name, exc_info=True)
                outcome: CheckOutcome = "ok" if reason is None else "error"
                if span.is_recording():
                    span.set_attribute(names.OUTCOME, outcome)
                    if reason is not None:
                        span.set_attribute(ERROR_TYPE, reason)
                        span.set_status(StatusCode.ERROR, detail)
            duration_s = time.perf_counter() - started
            result = Result(outcome, reason, detail, duration_s, correlation_id)
            self.metrics.finished(check.name, outcome, duration_s)
            if outcome == "ok":
                self.last_success[check.name] = self.clock()
            self._record(check, result)
            return result
        finally:
            context.detach(token)

    def _record(self, check: Check, result: Result) -> None:
        """Update the state; log only when it changes (first result, ok ↔ error, or a
        failure for a different reason)."""
        state = self.states[check.name]
        previous = state.last
        failed_before = state.failures_in_a_row
        state.last = result
        state.failures_in_a_row = 0 if result.outcome == "ok" else failed_before + 1
        if previous is not None and (previous.outcome, previous.reason) == (
            result.outcome,
            result.reason,
        ):
            return
        if result.outcome == "ok":
            if previous is None:
                logger.info(
                    "canary %s check ok (%.3fs, correlation_id %s)",
                    check.name,
                    result.duration_s,
                    result.correlation_id,
                )
            else:
                logger.info(
                    "canary %s check ok again after %d failed (%.3fs)",
                    check.name,
                    failed_before,
                    result.duration_s,
                )
        else:
            logger.warning(
                "canary %s check failing: %s: %s (correlation_id %s); logged again when"
                " this changes",
                check.name,
                result.reason,
                result.detail,
                result.correlation_id,
            )
