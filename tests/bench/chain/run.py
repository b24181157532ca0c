"""`make bench-chain`: the whole gateway chain as real processes (issue 6).

WebSocket callers → ws-gateway → provider-proxy → llm-simulator, with memory on
(storage-adapter on Postgres + Redis: each call reads its conversation's history and
stores its exchange). Two chains side by side (tests.bench.chain.stack): telemetry
`off` and `on` (OTLP to the bench collector). The load generator is its own process
(tests.bench.chain.load), pinned to core 1; each gateway is pinned to core 0.

1. Telemetry cost: a fixed number of callers against `off` and `on` in rotated order,
   three rounds, medians; then the collector's files prove that `on` exported every
   span, one correlation ID per call and the call counter (tests.bench.chain.proof).
   Below the 0.90 goal, both gateways are profiled with py-spy during one more run.
2. Connections: 2,000 authenticated sockets on the `on` chain, 200 of them calling
   (every other call streaming, one in four with memory) for a fixed time; errors, the
   in-flight counters afterwards (the `status` tool and the exported metrics), RSS per
   process.

The table and the goals go to stdout, the figures to var/bench-chain/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from tests.bench.chain.load import Spec, raise_fd_limit
from tests.bench.chain.proof import prove, verdict
from tests.bench.chain.stack import (
    GATEWAY_LIMITS,
    LOAD_CORE,
    PROXY_LIMITS,
    VARIANTS,
    Chain,
    Stack,
    running,
)
from tests.bench.peers.profile import profile_during
from tests.bench.processes import CORES, ROOT, cpu_seconds, pinned, process_group, python_module

MIN_ON_OFF = 0.90
MIN_CONNECTIONS = 2000
MAX_ERROR_SHARE = 0.001
# The reused client (NativeClient) waits 10 s x this scale per frame: with 200 callers on
# two cores an answer may take longer (each call is bounded by load.CALL_TIMEOUT_S).
LOAD_ENV = {**os.environ, "EXAI_TEST_TIME_SCALE": "6"}


class Bench:
    def __init__(self, stack: Stack, work: Path) -> None:
        self.stack = stack
        self.work = work
        self.loads = work / "load"
        self.loads.mkdir(parents=True, exist_ok=True)
        self.runs = 0
        # Everything the `on` chain was asked, for the telemetry proof.
        self.on_calls: dict[str, int] = {"chat": 0, "status": 0}
        self.on_correlation_ids: list[str] = []

    def pids(self, chain: Chain) -> dict[str, int]:
        own = {name: p.popen.pid for name, p in chain.processes.items()}
        return {**own, **self.stack.shared}

    def load(self, variant: str, **spec: Any) -> dict[str, Any]:
        """One run of the load generator against `variant`; its summary, with the CPU
        seconds each process of the chain used meanwhile."""
        chain = self.stack.chains[variant]
        self.runs += 1
        name = f"{self.runs:02d}-{variant}"
        spec_path, out_path = self.loads / f"{name}.spec.json", self.loads / f"{name}.out.json"
        full = Spec(url=chain.url, token=chain.token, prefix=f"r{self.runs}{variant}", **spec)
        spec_path.write_text(json.dumps(asdict(full)))
        pids = self.pids(chain)
        before = {n: cpu_seconds(p) for n, p in pids.items()}
        machine_before = machine_cpu_s()
        argv = [*python_module("tests.bench.chain.load"), str(spec_path), str(out_path)]
        subprocess.run(pinned(argv, LOAD_CORE), check=True, cwd=ROOT, env=LOAD_ENV)
        result: dict[str, Any] = json.loads(out_path.read_text())
        cpu = {n: cpu_seconds(p) - before[n] for n, p in pids.items()}
        # Every process of the machine (Postgres' backends, other work) over the whole run.
        cpu["machine"] = machine_cpu_s() - machine_before
        result["cpu"] = {**cpu, "load-generator": result["window_cpu_s"]}
        if variant == "on":
            self.on_calls["chat"] += result["calls"]
            self.on_calls["status"] += 1 if result["status"] else 0
            self.on_correlation_ids += result.pop("correlation_ids")
        else:
            result.pop("correlation_ids")
        return result


def machine_cpu_s() -> float:
    """Busy CPU seconds of the whole machine so far (/proc/stat: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


def rotated(items: Sequence[str], shift: int) -> list[str]:
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def sum_counters(counters: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for counter in counters:
        for key, value in counter.items():
            total[key] = total.get(key, 0) + value
    return total


def line(label: str, result: dict[str, Any]) -> str:
    return (
        f"[bench-chain] {label}: {result['rate']:.1f} calls/s, p50 {result['p50_s'] * 1000:.0f} ms "
        f"p99 {result['p99_s'] * 1000:.0f} ms, ok {result['ok']}/{result['calls']}, "
        f"errors {result['error_total']} {dict(result['errors']) or ''}"
    )


def cpu_per_call(results: list[dict[str, Any]]) -> dict[str, float]:
    """CPU milliseconds per answered call, per process, over the given runs (the
    machine's figure includes Postgres and whatever else ran meanwhile)."""
    total: dict[str, float] = {}
    for result in results:
        for name, value in result["cpu"].items():
            total[name] = total.get(name, 0.0) + value
    calls = sum(result["ok"] for result in results) or 1
    return {name: 1000 * value / calls for name, value in sorted(total.items())}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench-chain", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15.0, help="per measured run")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--callers", type=int, default=16)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--active", type=int, default=200)
    parser.add_argument("--active-seconds", type=float, default=30.0)
    parser.add_argument("--stream-every", type=int, default=2, help="in the connections phase")
    parser.add_argument(
        "--memory-every",
        type=int,
        default=4,
        help="in the connections phase, 1 call in this many has memory (continuation_id)",
    )
    parser.add_argument("--profile", action="store_true", help="profile even when the goal is met")
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench-chain")
    args = parser.parse_args(argv)

    fd_limit = raise_fd_limit()
    started = time.monotonic()
    rounds: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    profiles: dict[str, list[str]] = {}
    with process_group(args.work / "logs") as group, running(group, args.work) as stack:
        bench = Bench(stack, args.work)
        print(
            f"[bench-chain] started in {time.monotonic() - started:.0f}s; logs in "
            f"{args.work / 'logs'}",
            flush=True,
        )
        for variant in VARIANTS:
            print(
                line(
                    f"warm-up {variant}",
                    bench.load(variant, callers=args.callers, seconds=args.warmup),
                ),
                flush=True,
            )
        for number in range(args.rounds):
            for variant in rotated(VARIANTS, number):
                result = bench.load(variant, callers=args.callers, seconds=args.seconds)
                rounds[variant].append(result)
                print(line(f"round {number + 1} {variant:3}", result), flush=True)
        rates = {v: statistics.median(r["rate"] for r in rounds[v]) for v in VARIANTS}
        ratio = rates["on"] / rates["off"]
        if ratio < MIN_ON_OFF or args.profile:
            for variant in VARIANTS:
                gateway = stack.chains[variant].gateway
                _, profiles[variant] = profile_during(
                    gateway.popen.pid,
                    args.work / f"profile-gateway-{variant}.txt",
                    partial(bench.load, variant, callers=args.callers, seconds=args.seconds),
                )
        on = stack.chains["on"]
        print(
            f"[bench-chain] opening {args.connections} connections, {args.active} calling",
            flush=True,
        )
        many = bench.load(
            "on",
            callers=args.active,
            connections=args.connections,
            seconds=args.active_seconds,
            open_concurrency=100,
            stream_every=args.stream_every,
            memory_every=args.memory_every,
            status_after=True,
            rss_pids=bench.pids(on),
        )
        print(line("connections phase", many), flush=True)
        # The `on` services flush their last spans and their final metrics on SIGTERM.
        for name in ("ws-gateway", "provider-proxy", "storage-adapter"):
            on.processes[name].stop()
        time.sleep(2.5)  # one collector batch timeout
        on_calls, on_ids = bench.on_calls, bench.on_correlation_ids
    proof = prove(args.work / "telemetry", on_calls, on_ids)
    checks = verdict(proof)
    results = report(args, rounds, rates, many, proof, checks, profiles, fd_limit)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    (args.work / "results.json").write_text(json.dumps(results, indent=2, default=list))
    print(f"[bench-chain] {results['elapsed_s']:.0f}s; results in {args.work / 'results.json'}")
    return 0


def report(
    args: argparse.Namespace,
    rounds: dict[str, list[dict[str, Any]]],
    rates: dict[str, float],
    many: dict[str, Any],
    proof: dict[str, Any],
    checks: list[tuple[str, bool]],
    profiles: dict[str, list[str]],
    fd_limit: int,
) -> dict[str, Any]:
    ratio = rates["on"] / rates["off"]
    p50 = {v: statistics.median(r["p50_s"] for r in rounds[v]) * 1000 for v in VARIANTS}
    p99 = {v: statistics.median(r["p99_s"] for r in rounds[v]) * 1000 for v in VARIANTS}
    errors = {v: sum(r["error_total"] for r in rounds[v]) for v in VARIANTS}
    calls = {v: sum(r["calls"] for r in rounds[v]) for v in VARIANTS}
    per_call = {v: cpu_per_call(rounds[v]) for v in VARIANTS}
    memory = {
        v: {
            "read": sum_counters(r["memory_read"] for r in rounds[v]),
            "write": sum_counters(r["memory_write"] for r in rounds[v]),
        }
        for v in VARIANTS
    }
    made = many["calls"]
    error_share = many["error_total"] / made if made else 1.0
    open_errors = sum(many["open_failed"].values())
    status = many["status"]
    inflight = status.get("inflight", {})
    # The status call itself holds one slot, in its own session.
    counters_zero = inflight.get("global") == 1 and inflight.get("session") == 1
    telemetry_ok = all(ok for _, ok in checks)
    lines = [
        "",
        f"1. Telemetry on / off, whole chain, {args.callers} callers, medians of {args.rounds} "
        f"rounds of {args.seconds:g} s (memory on: Postgres + Redis)",
        "",
        "| figure | off | on | on / off |",
        "|---|---|---|---|",
        f"| calls/s | {rates['off']:.1f} | {rates['on']:.1f} | {ratio:.2f} |",
        f"| p50 / p99 | {p50['off']:.0f} / {p99['off']:.0f} ms | {p50['on']:.0f} / "
        f"{p99['on']:.0f} ms | |",
        f"| errors / calls | {errors['off']} / {calls['off']} | {errors['on']} / {calls['on']} | |",
        f"| memory read | {memory['off']['read']} | {memory['on']['read']} | |",
        f"| memory write | {memory['off']['write']} | {memory['on']['write']} | |",
    ]
    for name in per_call["off"]:
        off_ms, on_ms = per_call["off"][name], per_call["on"].get(name, 0.0)
        lines.append(
            f"| CPU ms per call: {name} | {off_ms:.1f} | {on_ms:.1f} | +{on_ms - off_ms:.1f} |"
        )
    lines += ["", "Telemetry received by the collector from `on`:"]
    lines += [f"  {'ok ' if ok else 'BAD'} {text}" for text, ok in checks]
    lines += [
        "",
        f"2. {args.connections} connections, {args.active} calling for {args.active_seconds:g} s "
        f"(1 call in {args.stream_every} streaming, 1 in {args.memory_every} with memory), "
        "`on` chain",
        "",
        "| figure | value |",
        "|---|---|",
        f"| connections opened (hello done) | {many['opened']} in {many['open_s']:.1f} s, "
        f"{open_errors} failed {dict(many['open_failed']) or ''} |",
        f"| idle connections still open at the end | {many['idle_still_open']} / "
        f"{many['idle_total']} |",
        f"| calls ok / made (streamed ok) | {many['ok']} / {made} ({many['streamed_ok']}) |",
        f"| calls/s, p50 / p99 | {many['rate']:.1f}, {many['p50_s'] * 1000:.0f} / "
        f"{many['p99_s'] * 1000:.0f} ms |",
        f"| errors | {many['error_total']} ({100 * error_share:.3f}%) "
        f"{dict(many['errors']) or ''} |",
        f"| memory read / write | {dict(many['memory_read'])} / {dict(many['memory_write'])} |",
        f"| status after (global, session in flight; connections open) | "
        f"{inflight.get('global')}, {inflight.get('session')}; "
        f"{status.get('connections', {}).get('open')} (the status call's own) |",
        f"| exported exai.gateway.inflight / connections at the end | "
        f"{proof['gateway_inflight_final']} / {proof['gateway_connections_final']} |",
        "| RSS with every connection open | "
        + ", ".join(f"{n} {b / 2**20:.0f} MiB" for n, b in sorted(many["rss"].items()))
        + " |",
        f"| load generator | {many['window_cpu_s']:.1f} CPU s while calling for "
        f"{args.active_seconds:g} s, pinned to core "
        f"{LOAD_CORE}; RLIMIT_NOFILE {fd_limit} |",
    ]
    goals = [
        (f"chain calls/s on / off >= {MIN_ON_OFF:.2f}: {ratio:.2f}", ratio >= MIN_ON_OFF),
        ("every span, correlation ID and the call counter exported", telemetry_ok),
        (
            f">= {MIN_CONNECTIONS} open connections: {many['opened']}, "
            f"{many['idle_still_open']}/{many['idle_total']} idle still open",
            many["opened"] >= MIN_CONNECTIONS and many["idle_still_open"] == many["idle_total"],
        ),
        (
            f"errors < {100 * MAX_ERROR_SHARE:.1f}%: {100 * error_share:.3f}% "
            f"(+{open_errors} failed opens)",
            error_share < MAX_ERROR_SHARE and open_errors == 0,
        ),
        (
            "in-flight counters back to exactly 0 (status tool and exported metric)",
            counters_zero and proof["gateway_inflight_final"] == 0,
        ),
    ]
    lines += ["", "Goals (issue 6):"]
    lines += [f"  {'met    ' if ok else 'NOT MET'} {text}" for text, ok in goals]
    for variant, top in profiles.items():
        lines += ["", f"py-spy, ws-gateway `{variant}` (own time):", *top[3:23]]
    print("\n".join(lines))
    return {
        "date": time.strftime("%Y-%m-%d"),
        "cores": CORES,
        "load_core": LOAD_CORE,
        "limits": {**GATEWAY_LIMITS, **PROXY_LIMITS, "RLIMIT_NOFILE": fd_limit},
        "telemetry_cost": {
            "callers": args.callers,
            "rounds": args.rounds,
            "seconds": args.seconds,
            "rate": rates,
            "ratio": ratio,
            "p50_ms": p50,
            "p99_ms": p99,
            "errors": errors,
            "calls": calls,
            "cpu_ms_per_call": per_call,
            "memory": memory,
            "raw": rounds,
        },
        "telemetry_proof": proof,
        "telemetry_checks": [{"check": t, "ok": ok} for t, ok in checks],
        "connections": many,
        "goals": [{"goal": t, "met": ok} for t, ok in goals],
        "profiles": profiles,
    }


if __name__ == "__main__":
    sys.exit(main())
