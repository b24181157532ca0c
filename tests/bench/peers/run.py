"""`make bench-peers`: provider-proxy side by side with the LiteLLM proxy (issue 6).

The llm-simulator (no latency, no token pacing) answers non-streaming chat completions.
In front of it, each pinned to core 0 (when `taskset` and a second core exist):

- `EXAI off`: provider-proxy with `OTEL_SDK_DISABLED=true` (spans recorded, not exported);
- `EXAI on`: provider-proxy exporting traces, metrics and logs over OTLP to a collector;
- `LiteLLM`: the LiteLLM proxy (one worker), in its own venv.

`hey` drives each one from core 1 (with the simulator and the collector): c=1 for the
added latency, c=50 for throughput and the tail. Variants run in rotated order, three
rounds, and every figure is the median of the rounds. At the end, the collector's files
prove that `EXAI on` exported every span, one correlation ID per request and the request
counter. The table and the goals go to stdout, and the figures to
var/bench-peers/results.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.bench.peers.hey import LoadResult, ensure_hey, run_hey
from tests.bench.peers.litellm import ensure_litellm, litellm_config, litellm_log_config
from tests.bench.peers.profile import profile_during
from tests.bench.peers.received import Received, received
from tests.bench.processes import (
    CORES,
    ROOT,
    ProcessGroup,
    pinned,
    process_group,
    python_module,
    start_bench_collector,
    start_simulator,
)
from tests.support.servers import free_port

MODEL = "kimi-k2-0905-preview"
PROVIDER_KEY = "sk-bench-not-a-real-key"
BODY = json.dumps(
    {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Name three colours, briefly."}],
        "max_tokens": 32,
    }
)
CHAT_PATH = "/v1/chat/completions"
VARIANTS = ("direct", "exai_off", "exai_on", "litellm")
LABELS = {"direct": "direct", "exai_off": "EXAI off", "exai_on": "EXAI on", "litellm": "LiteLLM"}
PROCESS_OF = {
    "direct": "llm-simulator",
    "exai_off": "provider-proxy-off",
    "exai_on": "provider-proxy-on",
    "litellm": "litellm",
}
PROXY_CORE = "0"
LOAD_CORE = "1" if CORES > 1 else "0"


@dataclass
class Target:
    name: str
    url: str
    headers: dict[str, str]
    pid: int | None = None


@dataclass
class Figures:
    c1: list[LoadResult] = field(default_factory=list)
    c50: list[LoadResult] = field(default_factory=list)
    # Per c=50 run: CPU seconds each process used, over the run's wall seconds.
    busy: list[dict[str, float]] = field(default_factory=list)


def cpu_snapshot(group: ProcessGroup) -> dict[str, float]:
    """CPU seconds so far per process, plus `hey` (this process's finished children)."""
    snapshot = {p.name: p.cpu_seconds() for p in group.started if p.popen.poll() is None}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    snapshot["hey"] = children.ru_utime + children.ru_stime
    return snapshot


def start_targets(group: ProcessGroup, work: Path) -> dict[str, Target]:
    off_port, on_port, litellm_port = (free_port() for _ in range(3))
    proxy_token = secrets.token_urlsafe(24)
    _, otlp_endpoint = start_bench_collector(group, work / "telemetry", LOAD_CORE)
    sim, sim_url = start_simulator(group, LOAD_CORE)
    proxy_env = {
        "EXAI_SIMULATOR_URL": sim_url,
        "EXAI_PROVIDER_TOKEN": proxy_token,
    }
    off = group.start(
        "provider-proxy-off",
        python_module("provider_proxy"),
        env={**proxy_env, "EXAI_PROVIDER_PROXY_PORT": str(off_port), "OTEL_SDK_DISABLED": "true"},
        cores=PROXY_CORE,
        ready_url=f"http://127.0.0.1:{off_port}/health/ready",
    )
    on = group.start(
        "provider-proxy-on",
        python_module("provider_proxy"),
        env={
            **proxy_env,
            "EXAI_PROVIDER_PROXY_PORT": str(on_port),
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
            "OTEL_SERVICE_NAME": "provider-proxy-bench-on",
        },
        cores=PROXY_CORE,
        ready_url=f"http://127.0.0.1:{on_port}/health/ready",
    )
    config = litellm_config(work / "litellm.yaml", MODEL, f"{sim_url}/v1", PROVIDER_KEY)
    lite = group.start(
        "litellm",
        [
            str(ensure_litellm()),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(litellm_port),
            "--num_workers",
            "1",
            "--log_config",
            str(litellm_log_config(work / "litellm-logging.json")),
        ],
        env={"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"},
        cores=PROXY_CORE,
        ready_url=f"http://127.0.0.1:{litellm_port}/health/liveliness",
        timeout_s=180,
    )
    bearer = {"Authorization": f"Bearer {proxy_token}"}
    return {
        "direct": Target(
            "direct",
            f"{sim_url}{CHAT_PATH}",
            {"Authorization": f"Bearer {PROVIDER_KEY}"},
            sim.popen.pid,
        ),
        "exai_off": Target(
            "exai_off", f"http://127.0.0.1:{off_port}{CHAT_PATH}", bearer, off.popen.pid
        ),
        "exai_on": Target(
            "exai_on", f"http://127.0.0.1:{on_port}{CHAT_PATH}", bearer, on.popen.pid
        ),
        "litellm": Target(
            "litellm", f"http://127.0.0.1:{litellm_port}{CHAT_PATH}", {}, lite.popen.pid
        ),
    }


def rotated(items: Sequence[str], shift: int) -> list[str]:
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench-peers", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--c1-seconds", type=float, default=5.0)
    parser.add_argument("--c50-seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--profile",
        choices=["exai_on", "exai_off", "litellm"],
        help="after the rounds, py-spy the named proxy during one more c=50 run",
    )
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench-peers")
    args = parser.parse_args(argv)

    hey = ensure_hey()
    load_cores = pinned([], LOAD_CORE)
    figures = {name: Figures() for name in VARIANTS}
    sent_to_on = 0
    with process_group(args.work / "logs") as group:
        targets = start_targets(group, args.work)

        def load(target: Target, concurrency: int, seconds: float) -> LoadResult:
            return run_hey(
                hey,
                target.url,
                BODY,
                concurrency=concurrency,
                duration_s=seconds,
                headers=target.headers,
                cores=load_cores,
            )

        print(f"[bench-peers] warm-up; logs in {args.work / 'logs'}", flush=True)
        for name in VARIANTS:
            result = load(targets[name], args.concurrency, 3)
            sent_to_on += result.responses if name == "exai_on" else 0
        for number in range(args.rounds):
            order = rotated(VARIANTS, number)
            for name in order:
                c1 = load(targets[name], 1, args.c1_seconds)
                before, started = cpu_snapshot(group), time.monotonic()
                c50 = load(targets[name], args.concurrency, args.c50_seconds)
                after, wall = cpu_snapshot(group), time.monotonic() - started
                busy = {k: (after[k] - before[k]) / wall for k in after if k in before}
                figures[name].c1.append(c1)
                figures[name].c50.append(c50)
                figures[name].busy.append(busy)
                if name == "exai_on":
                    sent_to_on += c1.responses + c50.responses
                print(
                    f"[bench-peers] round {number + 1} {LABELS[name]:9} "
                    f"c=1 p50 {c1.p50_s * 1000:.2f} ms p99 {c1.p99_s * 1000:.2f} ms | "
                    f"c={args.concurrency} {c50.rps:.0f} req/s p50 {c50.p50_s * 1000:.1f} ms "
                    f"p99 {c50.p99_s * 1000:.1f} ms errors {c1.errors + c50.errors} | CPU "
                    + " ".join(f"{k} {v:.0%}" for k, v in busy.items() if v >= 0.02),
                    flush=True,
                )
        profile: list[str] = []
        if args.profile:
            target = targets[args.profile]
            assert target.pid is not None
            profiled, profile = profile_during(
                target.pid,
                args.work / f"profile-{args.profile}.txt",
                lambda: load(target, args.concurrency, args.c50_seconds),
            )
            sent_to_on += profiled.responses if args.profile == "exai_on" else 0
        on_process = next(p for p in group.started if p.name == "provider-proxy-on")
        on_process.stop()  # flushes its last spans and its final metric export
        time.sleep(2.5)  # one collector batch timeout
        group.close()

    counted = received(args.work / "telemetry", "provider-proxy-bench-on")
    table = summarise(figures, args.concurrency)
    print(render(table, args.concurrency))
    proof = telemetry_proof(counted, sent_to_on)
    print(proof["text"])
    if profile:
        print("\n".join(profile))
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "cores": CORES,
        "pinned": load_cores != [],
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "table": table,
        "telemetry": {k: v for k, v in proof.items() if k != "text"},
        "raw": {
            name: {
                "c1": [asdict(r) for r in f.c1],
                "c50": [asdict(r) for r in f.c50],
                "c50_cpu_busy": f.busy,
            }
            for name, f in figures.items()
        },
    }
    (args.work / "results.json").write_text(json.dumps(results, indent=2))
    goals = check_goals(table)
    for line in goals:
        print(line)
    return 0


def summarise(figures: dict[str, Figures], concurrency: int) -> dict[str, dict[str, float]]:
    direct_c1 = figures["direct"].c1
    table: dict[str, dict[str, float]] = {}
    for name, f in figures.items():
        row = {
            "c1_p50_ms": median([r.p50_s for r in f.c1]) * 1000,
            "c1_p99_ms": median([r.p99_s for r in f.c1]) * 1000,
            "rps": median([r.rps for r in f.c50]),
            "p50_ms": median([r.p50_s for r in f.c50]) * 1000,
            "p99_ms": median([r.p99_s for r in f.c50]) * 1000,
            # CPU time per request (c=50): the cost, whatever else shares the core.
            "cpu_ms_per_request": median(
                [
                    busy.get(PROCESS_OF[name], 0.0) * 1000 / max(r.rps, 1e-9)
                    for busy, r in zip(f.busy, f.c50, strict=True)
                ]
            ),
            "cpu_busy": median([busy.get(PROCESS_OF[name], 0.0) for busy in f.busy]),
            "errors": float(sum(r.errors for r in [*f.c1, *f.c50])),
            "requests": float(sum(r.responses + r.transport_errors for r in [*f.c1, *f.c50])),
        }
        if name != "direct":
            # Added latency: this proxy's c=1 percentile minus the direct one, per round.
            row["added_p50_ms"] = median(
                [(r.p50_s - d.p50_s) * 1000 for r, d in zip(f.c1, direct_c1, strict=True)]
            )
            row["added_p99_ms"] = median(
                [(r.p99_s - d.p99_s) * 1000 for r, d in zip(f.c1, direct_c1, strict=True)]
            )
        table[name] = row
    return table


def render(table: dict[str, dict[str, float]], concurrency: int) -> str:
    names = list(VARIANTS)
    lines = [
        "",
        "| figure | " + " | ".join(LABELS[n] for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]

    def cells(fmt: Callable[[dict[str, float]], str]) -> str:
        return " | ".join(fmt(table[n]) for n in names)

    lines.append(
        "| c=1 added latency p50 / p99 | "
        + cells(
            lambda r: (
                "-"
                if "added_p50_ms" not in r
                else f"{r['added_p50_ms']:.1f} / {r['added_p99_ms']:.1f} ms"
            )
        )
        + " |"
    )
    lines.append(f"| c={concurrency} requests/s | " + cells(lambda r: f"{r['rps']:.0f}") + " |")
    lines.append(
        f"| c={concurrency} p50 / p99 | "
        + cells(lambda r: f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f} ms")
        + " |"
    )
    lines.append(
        f"| c={concurrency} CPU per request (its core busy) | "
        + cells(lambda r: f"{r['cpu_ms_per_request']:.2f} ms ({r['cpu_busy']:.0%})")
        + " |"
    )
    lines.append(
        "| errors / requests | "
        + cells(lambda r: f"{r['errors']:.0f} / {r['requests']:.0f}")
        + " |"
    )
    return "\n".join(lines)


def check_goals(table: dict[str, dict[str, float]]) -> list[str]:
    on, off, lite = table["exai_on"], table["exai_off"], table["litellm"]
    goals = [
        ("c=50 req/s, EXAI on / LiteLLM >= 2.0", on["rps"] / lite["rps"], 2.0, ">="),
        ("c=50 p99, EXAI on / LiteLLM <= 1.0", on["p99_ms"] / lite["p99_ms"], 1.0, "<="),
        (
            "c=1 added p50, EXAI on / LiteLLM <= 0.5",
            on["added_p50_ms"] / lite["added_p50_ms"],
            0.5,
            "<=",
        ),
        (
            "c=1 added p99, EXAI on / LiteLLM <= 1.0",
            on["added_p99_ms"] / lite["added_p99_ms"],
            1.0,
            "<=",
        ),
        ("c=50 req/s, EXAI on / off >= 0.90", on["rps"] / off["rps"], 0.90, ">="),
        (
            "c=50 CPU per request, EXAI off / on >= 0.90",
            off["cpu_ms_per_request"] / on["cpu_ms_per_request"],
            0.90,
            ">=",
        ),
    ]
    lines = ["", "Goals (issue 6):"]
    for label, value, bound, op in goals:
        met = value >= bound if op == ">=" else value <= bound
        lines.append(f"  {'met    ' if met else 'NOT MET'} {label}: {value:.2f}")
    return lines


def telemetry_proof(counted: Received, sent: int) -> dict[str, object]:
    route_count = counted.server_requests.get(CHAT_PATH, 0)
    lines = [
        "",
        "Telemetry received by the collector from `EXAI on`:",
        f"  spans: {counted.span_total} ({dict(counted.spans)})",
        f"  distinct correlation IDs: {len(counted.correlation_ids)}; spans without one: "
        f"{counted.spans_without_correlation}",
        f"  http.server.request.duration count for {CHAT_PATH}: {route_count}",
    ]
    lines.append(f"  requests answered to hey: {sent}")
    return {
        "text": "\n".join(lines),
        "spans": counted.span_total,
        "span_names": dict(counted.spans),
        "correlation_ids": len(counted.correlation_ids),
        "spans_without_correlation": counted.spans_without_correlation,
        "request_count_metric": route_count,
        "requests_sent": sent,
    }


if __name__ == "__main__":
    sys.exit(main())
