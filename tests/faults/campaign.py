"""The fault campaign: every fault kind of the reliability suite against one running stack.

Each :class:`FaultRun` drives its own chat traffic through the gateway, injects one
fault, waits for the alert that should page (delivered by Alertmanager to the tests'
webhook), undoes the fault (restart, clear), waits for the alert's resolution and for
calls to succeed again, stops its traffic and checks what it can prove:

- every call the gateway acknowledged as stored (``call_tool_res`` with
  ``memory.write`` ``stored``, or ``pending``: written after the answer) has its prompt
  and its answer in the database exactly once, and storage-adapter's API returns both;
  no call is ever stored twice. (A call answered with ``memory.write: failed`` was
  told its exchange is not remembered: the documented degraded mode, counted.)
- the gateway holds no in-flight call for any of the run's sessions afterwards.

Independent faults run at the same time to keep the campaign short: the provider lane
(slow first token, 429, 500, hang — one simulator fault at a time, alternating providers)
next to the storage lane (Redis down, Postgres down, kill -9 storage-adapter), whose
traffic uses whichever provider the provider lane leaves alone. Killing provider-proxy
and the collector would blind or break the others, so they run alone afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tests.e2e.helpers import AlertWebhook
from tests.faults.observe import (
    AlertMatch,
    Alerts,
    Prometheus,
    Simulator,
    StorageApi,
    Store,
    gateway_readiness,
)
from tests.faults.traffic import Call, Traffic, gateway_status
from tests.support.stack import RunningStack

MODELS = {"kimi": "kimi-k2-0905-preview", "glm": "glm-4.5"}
# Stream speed for every call but the slow fault's: ~2 s per answer, so a kill lands
# while streams are open. A long answer is no latency miss: the slow fault holds the
# FIRST chunk past the first-chunk objective (5 s) instead.
TOKENS_PER_S = 12.0
FIRE_TIMEOUT_S = 240.0
RESOLVE_TIMEOUT_S = 240.0
# Let calls already sent to a provider finish before a fault hits it.
MOVE_OFF_S = 3.0

PROVIDER_ALERTS = frozenset({"ProviderCircuitOpen", "ProviderErrorRatioHigh"})


def stored(call: Call) -> bool:
    return call.promised


def answered(call: Call) -> bool:
    return call.acknowledged


@dataclass
class StoreCheck:
    """What the database and storage-adapter's API hold for one run's calls."""

    stored_exactly_once: int = 0
    # Acknowledged as stored, but a message is missing or stored more than once.
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    # Calls not acknowledged as stored (an error, or memory.write="failed") whose
    # messages are in the database anyway (at most once: that is allowed).
    stored_unacknowledged: int = 0
    api_missing: list[str] = field(default_factory=list)


@dataclass
class FaultRun:
    key: str
    title: str
    match: AlertMatch
    traffic: Traffic
    inject_fault: Callable[[], Awaitable[None]]
    recover_fault: Callable[[], Awaitable[None]]
    # Error codes the client may see while the fault lasts (a provider fault fails
    # calls; a storage fault must not: chat answers without memory).
    expected_errors: frozenset[str] = frozenset()
    during_streaming: bool = False
    # What a working call looks like, before the fault and after recovery: stored, for
    # the storage faults; answered, for the provider faults (the storage lane may have
    # storage down meanwhile).
    healthy: Callable[[Call], bool] = field(default_factory=lambda: stored)
    # Runs just before the fault (not timed with it).
    prepare: Callable[[], Awaitable[None]] | None = None
    streaming_at_fault: int = 0
    injected_at: float | None = None
    fired_at: float | None = None
    fired: list[dict[str, str]] = field(default_factory=list)
    # The gateway's readiness probe while the fault lasted (once the alert fired).
    ready_during_fault: int | None = None
    recovered_at: float | None = None
    first_good_at: float | None = None
    resolved_at: float | None = None
    leaked_sessions: dict[str, int] = field(default_factory=dict)
    store: StoreCheck = field(default_factory=StoreCheck)
    problems: list[str] = field(default_factory=list)

    # --- figures ---------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        return [c for c in self.traffic.calls if c.ended is not None]

    @property
    def acknowledged(self) -> list[Call]:
        return [c for c in self.calls if c.acknowledged]

    @property
    def stored_acks(self) -> list[Call]:
        return [c for c in self.acknowledged if c.promised]

    @property
    def errors(self) -> Counter[str]:
        return Counter(c.outcome for c in self.calls if not c.acknowledged)

    @property
    def memory_not_stored(self) -> Counter[str]:
        return Counter(str(c.memory_write) for c in self.acknowledged if not c.promised)

    def seconds(self, start: float | None, end: float | None) -> float | None:
        return None if start is None or end is None else end - start


@dataclass
class Campaign:
    stack: RunningStack
    alerts: Alerts
    simulator: Simulator
    prometheus: Prometheus
    storage_api: StorageApi
    runs: dict[str, FaultRun] = field(default_factory=dict)
    avoid: str | None = None  # the provider the provider lane is about to fault
    started_at: float = field(default_factory=time.monotonic)
    ended_at: float | None = None
    final: dict[str, Any] = field(default_factory=dict)

    @property
    def token(self) -> str:
        return self.stack.ws_token

    def healthy_model(self) -> str:
        return MODELS["glm" if self.avoid == "kimi" else "kimi"]

    # --- one fault -------------------------------------------------------------------

    def fault(
        self,
        key: str,
        title: str,
        match: AlertMatch,
        inject: Callable[[], Awaitable[None]],
        recover: Callable[[], Awaitable[None]],
        *,
        model: Callable[[], str],
        workers: int,
        pause_s: float,
        stream_share: float = 0.75,
        expected_errors: frozenset[str] = frozenset(),
        during_streaming: bool = False,
        healthy: Callable[[Call], bool] = stored,
        prepare: Callable[[], Awaitable[None]] | None = None,
    ) -> FaultRun:
        traffic = Traffic(key, self.token, model, workers, pause_s, stream_share)
        run = FaultRun(
            key,
            title,
            match,
            traffic,
            inject,
            recover,
            expected_errors,
            during_streaming,
            healthy,
            prepare,
        )
        self.runs[key] = run
        return run

    async def until_recovered(self, run: FaultRun) -> None:
        """Traffic, fault, alert firing, fault undone. Problems are recorded, not
        raised: the other runs go on."""
        try:
            run.traffic.start()
            await self._warm_up(run)
            await self.alerts.quiet(run.match, timeout_s=RESOLVE_TIMEOUT_S)
            if run.prepare is not None:
                await run.prepare()
            if run.during_streaming:
                await self._until_streaming(run)
            run.streaming_at_fault = run.traffic.streaming_now()
            run.injected_at = time.monotonic()
            await run.inject_fault()
            try:
                run.fired = await self.alerts.firing(run.match, run.injected_at, FIRE_TIMEOUT_S)
                run.fired_at = self.alerts.first_arrival(run.match, "firing", run.injected_at)
                run.ready_during_fault = await gateway_readiness()
            finally:
                await run.recover_fault()
                run.recovered_at = time.monotonic()
        except Exception as exc:
            run.problems.append(f"{type(exc).__name__}: {exc}")

    async def finish(self, run: FaultRun) -> None:
        """Resolution and recovery, then traffic off. The checks come once every fault
        is undone (:meth:`check`): they read storage, which other runs take down."""
        try:
            if run.recovered_at is not None:
                if run.fired:
                    run.resolved_at = await self.alerts.resolved(
                        run.fired, run.fired_at or run.recovered_at, RESOLVE_TIMEOUT_S
                    )
                run.first_good_at = await self._first_good(run, run.recovered_at)
        except Exception as exc:
            run.problems.append(f"{type(exc).__name__}: {exc}")
        finally:
            await run.traffic.stop()

    async def check(self, run: FaultRun) -> None:
        try:
            await self._check(run)
        except Exception as exc:
            run.problems.append(f"checks: {type(exc).__name__}: {exc}")

    async def _warm_up(self, run: FaultRun, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while sum(map(run.healthy, run.traffic.calls)) < 2:
            if time.monotonic() > deadline:
                raise AssertionError(f"no working calls before the fault: {run.errors}")
            await asyncio.sleep(0.2)

    async def _until_streaming(self, run: FaultRun, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while run.traffic.streaming_now() < 1:
            if time.monotonic() > deadline:
                raise AssertionError("no call was streaming when the fault was due")
            await asyncio.sleep(0.02)

    async def _first_good(self, run: FaultRun, since: float, timeout_s: float = 120) -> float:
        """When the first call started after recovery ended as a working call."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            good = [
                c.ended
                for c in run.traffic.calls
                if c.started >= since and c.ended is not None and run.healthy(c)
            ]
            if good:
                return min(good)
            await asyncio.sleep(0.2)
        raise AssertionError(f"no working call within {timeout_s:.0f}s of recovery")

    async def _check(self, run: FaultRun) -> None:
        calls = run.calls
        counts = await Store().messages({c.continuation_id for c in calls})
        check = run.store
        for call in calls:
            user = counts.get((call.continuation_id, "user", call.prompt), 0)
            answer = counts.get((call.continuation_id, "assistant", call.answer or ""), 0)
            label = f"{call.continuation_id} {call.prompt[-30:]!r} ({call.outcome})"
            if user > 1 or answer > 1:
                check.duplicated.append(f"{label}: user x{user}, assistant x{answer}")
            if call.promised:
                if user == 1 and answer == 1:
                    check.stored_exactly_once += 1
                else:
                    check.lost.append(f"{label}: user x{user}, assistant x{answer}")
            elif user or answer:
                check.stored_unacknowledged += 1
        # Any message stored twice, whether this ledger knows its call or not.
        check.duplicated += [f"{cid} {role} x{n}" for (cid, role, _), n in counts.items() if n > 1]
        for cid in sorted({c.continuation_id for c in run.stored_acks}):
            history = await self.storage_api.history(cid) or []
            for call in (c for c in run.stored_acks if c.continuation_id == cid):
                for message in (("user", call.prompt), ("assistant", call.answer or "")):
                    if message not in history:
                        check.api_missing.append(f"{cid} {message[0]} {call.prompt[-30:]!r}")
        for session_id in run.traffic.session_ids:
            in_session = (await gateway_status(self.token, session_id)).session_inflight
            if in_session:
                run.leaked_sessions[session_id] = in_session

    # --- the faults ------------------------------------------------------------------

    def provider_fault(self, key: str, title: str, mode: str, provider: str, **kw: Any) -> FaultRun:
        async def move_off() -> None:
            self.avoid = provider
            await asyncio.sleep(MOVE_OFF_S)

        async def inject() -> None:
            await self.simulator.fault(mode, provider)

        match = kw.pop("match", AlertMatch(PROVIDER_ALERTS, {"gen_ai_provider_name": provider}))
        return self.fault(
            key,
            title,
            match,
            inject,
            self.simulator.clear,
            model=lambda: MODELS[provider],
            healthy=answered,
            prepare=move_off,
            **kw,
        )

    def process_fault(
        self, key: str, title: str, process: str, match: AlertMatch, signum: int, **kw: Any
    ) -> FaultRun:
        async def inject() -> None:
            await asyncio.to_thread(self.stack.kill, process, signum)

        async def recover() -> None:
            await asyncio.to_thread(self.stack.restart, process)

        return self.fault(key, title, match, inject, recover, **kw)

    async def provider_lane(self) -> list[FaultRun]:
        slow = self.provider_fault(
            "provider_slow",
            "provider slow first token (glm, 3 s)",
            "slow_first_token",
            "glm",
            match=AlertMatch(frozenset({"GatewayFirstChunkBudgetBurnFast"})),
            workers=12,
            pause_s=0.0,
            stream_share=1.0,
        )
        rate_limited = self.provider_fault(
            "provider_429",
            "provider 429 (kimi, every request)",
            "rate_limit",
            "kimi",
            workers=3,
            pause_s=0.3,
            expected_errors=frozenset({"PROVIDER_ERROR"}),
        )
        server_error = self.provider_fault(
            "provider_500",
            "provider 500 (glm, every request)",
            "error_500",
            "glm",
            workers=3,
            pause_s=0.3,
            expected_errors=frozenset({"PROVIDER_ERROR"}),
        )
        hang = self.provider_fault(
            "provider_hang",
            "provider hangs (kimi, no answer)",
            "hang",
            "kimi",
            workers=3,
            pause_s=0.3,
            expected_errors=frozenset({"PROVIDER_ERROR", "TIMEOUT"}),
        )
        # A run's traffic goes on after its fault is cleared, until the alert resolved:
        # the next fault on the same provider waits for it to end.
        finishing: dict[str, asyncio.Task[None]] = {}
        for run, provider in (
            (slow, "glm"),
            (rate_limited, "kimi"),
            (server_error, "glm"),
            (hang, "kimi"),
        ):
            if provider in finishing:
                await finishing[provider]
            await self.until_recovered(run)
            finishing[provider] = asyncio.create_task(self.finish(run))
        await asyncio.gather(*finishing.values())
        self.avoid = None
        return [slow, rate_limited, server_error, hang]

    async def storage_lane(self) -> list[FaultRun]:
        common: dict[str, Any] = {"model": self.healthy_model, "workers": 2, "pause_s": 1.0}
        runs = [
            self.process_fault(
                "redis_down",
                "Redis down (kill -9, restarted)",
                "redis",
                AlertMatch(frozenset({"StorageDegraded"}), {"service_name": "storage-adapter"}),
                signal.SIGKILL,
                **common,
            ),
            self.process_fault(
                "postgres_down",
                "Postgres down (immediate shutdown, restarted)",
                "postgres",
                AlertMatch(frozenset({"StorageFailing"}), {"service_name": "storage-adapter"}),
                signal.SIGQUIT,
                **common,
            ),
            self.process_fault(
                "kill_storage_adapter",
                "kill -9 storage-adapter while streaming",
                "storage-adapter",
                AlertMatch(
                    frozenset({"ServiceTelemetryAbsent"}), {"service_name": "storage-adapter"}
                ),
                signal.SIGKILL,
                during_streaming=True,
                **{**common, "workers": 3, "pause_s": 0.5},
            ),
        ]
        # One after the other: a storage fault would cost the previous run's calls
        # their memory while it waits for its resolution.
        for run in runs:
            await self.until_recovered(run)
            await self.finish(run)
        return runs

    async def alone(self) -> list[FaultRun]:
        kw: dict[str, Any] = {
            "model": lambda: MODELS["kimi"],
            "workers": 3,
            "pause_s": 0.5,
            "during_streaming": True,
        }
        proxy = self.process_fault(
            "kill_provider_proxy",
            "kill -9 provider-proxy while streaming",
            "provider-proxy",
            AlertMatch(frozenset({"ServiceTelemetryAbsent"}), {"service_name": "provider-proxy"}),
            signal.SIGKILL,
            expected_errors=frozenset({"PROVIDER_ERROR"}),
            **kw,
        )
        await self.until_recovered(proxy)
        await self.finish(proxy)
        collector = self.process_fault(
            "kill_otel_collector",
            "kill -9 otel collector while streaming",
            "otelcol",
            AlertMatch(frozenset({"TelemetryPipelineLosingData"}), {"stage": "collector"}),
            signal.SIGKILL,
            **kw,
        )
        await self.until_recovered(collector)
        await self.finish(collector)
        return [proxy, collector]

    async def run(self) -> None:
        await self.simulator.latency(TOKENS_PER_S)
        await asyncio.gather(self.provider_lane(), self.storage_lane())
        await self.alone()
        for run in self.runs.values():
            await self.check(run)
        await self._final_counters()
        self.ended_at = time.monotonic()

    async def _final_counters(self, timeout_s: float = 60) -> None:
        """Nothing in flight anywhere once every client is gone."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = await gateway_status(self.token, "faults-final")
            sim = await self.simulator.stats()
            exported = await self.prometheus.scalar("sum(exai_gateway_inflight)")
            self.final = {
                "gateway_inflight": status.global_inflight,
                "gateway_connections": status.connections,
                "prometheus_inflight": exported,
                "simulator_streaming": sim["streaming"],
                "simulator_hanging": sim["hanging"],
            }
            if all(v == 0 for v in self.final.values()) or time.monotonic() > deadline:
                return
            await asyncio.sleep(2)


async def run_campaign(stack: RunningStack, webhook: AlertWebhook) -> Campaign:
    prometheus = Prometheus()
    simulator = Simulator(stack.env.get("EXAI_SIMULATOR_ADMIN_TOKEN"))
    storage_api = StorageApi(stack.env.get("EXAI_STORAGE_TOKEN"))
    campaign = Campaign(stack, Alerts(webhook, prometheus), simulator, prometheus, storage_api)
    try:
        await campaign.run()
    finally:
        for client in (prometheus.http, simulator.http, storage_api.http):
            with contextlib.suppress(Exception):
                await client.aclose()
    return campaign


# --- figures ---------------------------------------------------------------------------


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def figures_table(campaign: Campaign) -> str:
    """The Markdown table for docs/reliability.md."""
    header = (
        "| fault | alert (pager) | firing after (s) | resolved after recovery (s) | "
        "first working call after recovery (s) | calls | answered | answered as stored | "
        "stored exactly once | answered, memory not stored | errors seen by the client | "
        "streaming at fault | gateway ready during fault |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|\n"
    )
    rows = []
    for run in campaign.runs.values():
        errors = ", ".join(f"{code} {n}" for code, n in sorted(run.errors.items())) or "none"
        not_stored = ", ".join(f"{w} {n}" for w, n in sorted(run.memory_not_stored.items()))
        fired = ", ".join(sorted({a["alertname"] for a in run.fired})) or "none"
        rows.append(
            f"| {run.title} | {fired} | "
            f"{_s(run.seconds(run.injected_at, run.fired_at))} | "
            f"{_s(run.seconds(run.recovered_at, run.resolved_at))} | "
            f"{_s(run.seconds(run.recovered_at, run.first_good_at))} | "
            f"{len(run.calls)} | {len(run.acknowledged)} | {len(run.stored_acks)} | "
            f"{run.store.stored_exactly_once} | {not_stored or '0'} | {errors} | "
            f"{run.streaming_at_fault} | {run.ready_during_fault or '—'} |"
        )
    return header + "\n".join(rows) + "\n"
