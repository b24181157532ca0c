"""Two whole gateway chains as real processes, side by side (`make bench-chain`).

Shared by both chains: the llm-simulator (the stand-in for the paid API; no latency, no
token pacing, telemetry off like the real provider's), one Redis and one Postgres
server (tests.support.servers, Postgres with fsync=off; each chain has its own Redis
database and its own Postgres database). Per chain: provider-proxy, storage-adapter
(Postgres durable store, Redis cache) and ws-gateway. `off` runs with
`OTEL_SDK_DISABLED=true`; `on` exports traces, metrics and logs over OTLP to the bench
collector (file exporters), which the benchmark reads afterwards to count what arrived.

Pinning (when `taskset` and two cores exist): each ws-gateway on core 0, the load
generator on core 1; everything else floats over both cores, as it would on a small VM.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.processes import (
    CORES,
    Process,
    ProcessGroup,
    python_module,
    start_bench_collector,
    start_simulator,
)
from tests.support.servers import free_port, postgres_server, redis_server

VARIANTS = ("off", "on")
DATABASES = {"off": "postgres", "on": "exai"}
GATEWAY_CORE = "0"
LOAD_CORE = "1" if CORES > 1 else None

# Gateway limits the 2,000-connection phase needs (defaults in ws_gateway.settings:
# 256 connections, 64 unauthenticated, 64 calls in flight). The same for both chains.
GATEWAY_LIMITS = {
    "EXAI_MAX_CONNECTIONS": "2200",
    "EXAI_MAX_UNAUTHENTICATED": "256",
    "EXAI_MAX_INFLIGHT_GLOBAL": "256",
}
# Simulated spend of a few thousand calls a minute is far over the default $5/hour
# budget; the budget only alerts, but the bench keeps the figure meaningful.
PROXY_LIMITS = {"EXAI_SPEND_BUDGET_USD_PER_HOUR": "1000000"}


@dataclass
class Chain:
    variant: str
    url: str
    token: str
    processes: dict[str, Process] = field(default_factory=dict)

    @property
    def gateway(self) -> Process:
        return self.processes["ws-gateway"]


@dataclass
class Stack:
    chains: dict[str, Chain]
    shared: dict[str, int]  # name → pid: simulator, collector, redis
    telemetry_dir: Path


@contextlib.contextmanager
def running(group: ProcessGroup, work: Path) -> Iterator[Stack]:
    """Start everything; Redis and Postgres stop when the block ends (after `group`)."""
    telemetry_dir = work / "telemetry"
    with redis_server() as redis, postgres_server() as postgres:
        collector, otlp_endpoint = start_bench_collector(group, telemetry_dir)
        simulator, sim_url = start_simulator(group)
        quiet = {"EXAI_LOG_LEVEL": "WARNING", "EXAI_INTERNAL_AUTH": "on"}
        chains: dict[str, Chain] = {}
        for number, variant in enumerate(VARIANTS):
            telemetry = (
                {"OTEL_SDK_DISABLED": "true"}
                if variant == "off"
                else {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint}
            )
            # postgres_server() creates `exai`; `postgres` always exists.
            database = DATABASES[variant]
            provider_token, storage_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
            ws_token = secrets.token_urlsafe(24)
            ports = {name: free_port() for name in ("proxy", "storage", "gateway")}
            chain = Chain(variant, f"ws://127.0.0.1:{ports['gateway']}", ws_token)
            chain.processes["provider-proxy"] = group.start(
                f"provider-proxy-{variant}",
                python_module("provider_proxy"),
                env={
                    **quiet,
                    **telemetry,
                    **PROXY_LIMITS,
                    "EXAI_SIMULATOR_URL": sim_url,
                    "EXAI_PROVIDER_TOKEN": provider_token,
                    "EXAI_PROVIDER_PROXY_PORT": str(ports["proxy"]),
                },
                ready_url=f"http://127.0.0.1:{ports['proxy']}/health/ready",
            )
            chain.processes["storage-adapter"] = group.start(
                f"storage-adapter-{variant}",
                python_module("storage_adapter"),
                env={
                    **quiet,
                    **telemetry,
                    "EXAI_STORAGE_TOKEN": storage_token,
                    "EXAI_STORAGE_ADAPTER_PORT": str(ports["storage"]),
                    "EXAI_DATABASE_URL": f"postgresql://exai@127.0.0.1:{postgres.port}/{database}",
                    "REDIS_URL": f"redis://127.0.0.1:{redis.port}/{number}",
                },
                ready_url=f"http://127.0.0.1:{ports['storage']}/health/ready",
            )
            chain.processes["ws-gateway"] = group.start(
                f"ws-gateway-{variant}",
                python_module("ws_gateway"),
                env={
                    **quiet,
                    **telemetry,
                    **GATEWAY_LIMITS,
                    "EXAI_WS_TOKEN": ws_token,
                    "EXAI_WS_PORT": str(ports["gateway"]),
                    "EXAI_PROVIDER_URL": f"http://127.0.0.1:{ports['proxy']}",
                    "EXAI_STORAGE_URL": f"http://127.0.0.1:{ports['storage']}",
                    "EXAI_PROVIDER_TOKEN": provider_token,
                    "EXAI_STORAGE_TOKEN": storage_token,
                },
                cores=GATEWAY_CORE if LOAD_CORE is not None else None,
                ready_url=f"http://127.0.0.1:{ports['gateway']}/health/ready",
            )
            chains[variant] = chain
        shared = {
            "llm-simulator": simulator.popen.pid,
            "otelcol": collector.popen.pid,
            "redis": redis.process.pid,
        }
        try:
            yield Stack(chains, shared, telemetry_dir)
        finally:
            group.close()  # before Redis and Postgres go
