"""End-to-end: the service graph Prometheus holds is the request path, each hop counted once.

Chat calls with memory (one of them retried by the provider-proxy) go through the real
stack; the edges the collector's servicegraph connector then adds to
traces_service_graph_request_total must be exactly the hops those calls' spans show,
and each edge's count must equal what an independent witness counted: the callee's own
HTTP server metric (every service's SDK exports http.server.request.duration), or the
number of calls made. In particular provider-proxy → provider counts every upstream HTTP
attempt once: the proxy's logical `chat` CLIENT span (which no server span answers) must
not add a second, virtual edge (otel-collector.yaml, filter/servicegraph-genai).

The connector runs on every span before tail sampling, so the counts are exact at the
stack's 10% sampling; one call is made slow (over the 2 s latency policy) so its trace is
kept and the expected edges can be read off its spans in Jaeger.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.helpers import (
    GatewaySession,
    Jaeger,
    Prometheus,
    Simulator,
    eventually,
    parent_of,
    settled,
    span_services,
    span_tags,
)
from tests.support.stack import RunningStack

pytestmark = pytest.mark.e2e

MODEL = "kimi-k2-0905-preview"
Edge = tuple[str, str, str]  # client, server, connection_type

# The servicegraph block of otel-collector.yaml: which attributes make a client span a
# database edge, and which name the server of a client span nothing answers.
DATABASE_NAME_ATTRIBUTES = ("db.namespace", "db.name")
VIRTUAL_NODE_PEER_ATTRIBUTES = ("peer.service", "db.system.name", "db.system", "server.address")

# Unchanged for this long = every pending edge has paired or expired into a virtual node
# (store TTL 10 s + expiry loop 2 s + flush 2 s in e2e), and every SDK metric export
# (5 s) has landed.
QUIET_S = 20.0

WITNESSES = {
    # Upstream attempts as the provider (llm-simulator) received them, and its 429s.
    "attempts": 'sum(http_server_request_duration_seconds_count{service_name="llm-simulator",'
    'http_route=~".*/chat/completions"})',
    "attempts_429": 'sum(http_server_request_duration_seconds_count{service_name="llm-simulator",'
    'http_route=~".*/chat/completions",http_response_status_code="429"})',
    # Requests provider-proxy and storage-adapter served (health probes excluded).
    "proxy": 'sum(http_server_request_duration_seconds_count{service_name="provider-proxy",'
    'http_route="/v1/chat/completions"})',
    "storage": 'sum(http_server_request_duration_seconds_count{service_name="storage-adapter",'
    'http_route!~"/health.*"})',
}


def _edges(prometheus: Prometheus, metric: str) -> dict[Edge, float]:
    rows = prometheus.query(f"sum by (client, server, connection_type) ({metric})")
    # Prometheus drops empty labels: a plain client/server edge has no connection_type.
    return {
        (
            r["metric"]["client"],
            r["metric"]["server"],
            r["metric"].get("connection_type", ""),
        ): float(r["value"][1])
        for r in rows
    }


def _snapshot(prometheus: Prometheus) -> dict[str, Any]:
    return {
        "total": _edges(prometheus, "traces_service_graph_request_total"),
        "failed": _edges(prometheus, "traces_service_graph_request_failed_total"),
        **{name: prometheus.scalar(q) or 0.0 for name, q in WITNESSES.items()},
    }


def _settled(prometheus: Prometheus, timeout_s: float = 120.0) -> dict[str, Any]:
    """The snapshot once it has not changed for QUIET_S."""
    return settled(lambda: _snapshot(prometheus), quiet_s=QUIET_S, timeout_s=timeout_s)


def _delta(after: dict[Edge, float], before: dict[Edge, float]) -> dict[Edge, float]:
    return {
        edge: value - before.get(edge, 0.0)
        for edge, value in after.items()
        if value - before.get(edge, 0.0) > 0
    }


def _expected_edges(trace: dict[str, Any]) -> set[Edge]:
    """The edges the connector must make of this trace's spans, as configured."""
    service_of = span_services(trace)
    kind = {s["spanID"]: span_tags(s).get("span.kind") for s in trace["spans"]}
    children: dict[str, list[str]] = {}
    for span in trace["spans"]:
        parent = parent_of(span)
        if parent is not None:
            children.setdefault(parent, []).append(span["spanID"])
    edges: set[Edge] = set()
    for span in trace["spans"]:
        sid, tags = span["spanID"], span_tags(span)
        if kind[sid] == "server" and parent_of(span) is None:
            edges.add(("user", service_of[sid], "virtual_node"))
        if kind[sid] != "client":
            continue
        client = service_of[sid]
        servers = [c for c in children.get(sid, []) if kind[c] == "server"]
        if servers:
            edges.update((client, service_of[c], "") for c in servers)
        elif db := next((tags[a] for a in DATABASE_NAME_ATTRIBUTES if a in tags), None):
            edges.add((client, str(db), "database"))
        elif "gen_ai.operation.name" in tags and "http.request.method" not in tags:
            continue  # the GenAI logical span: filtered out before the connector
        else:
            peer = next((tags[a] for a in VIRTUAL_NODE_PEER_ATTRIBUTES if a in tags), "unknown")
            edges.add((client, str(peer), "virtual_node"))
    return edges


@pytest.fixture
def canary_stopped(stack: RunningStack) -> Iterator[None]:
    """The stack's canary calls the gateway every 15 s: background traffic that the exact
    edge counts below (and the quiet period they wait for) must not see. Started again
    afterwards."""
    stack.kill("canary", signal.SIGTERM)
    try:
        yield
    finally:
        stack.restart("canary")


async def test_service_graph_has_each_hop_once_and_counts_every_upstream_attempt(
    stack: RunningStack,
    simulator: Simulator,
    prometheus: Prometheus,
    jaeger: Jaeger,
    canary_stopped: None,
) -> None:
    before = _settled(prometheus)
    conversation = f"conv-sg-{uuid.uuid4().hex[:12]}"
    slow_id = f"e2e-sg-slow-{uuid.uuid4()}"
    admin_calls = 0
    results = []
    try:
        async with GatewaySession.open(stack.ws_token) as session:
            # Slow, so tail sampling keeps its trace for the expected edges below.
            simulator.http.post("/admin/latency", json={"ms": 2500}).raise_for_status()
            admin_calls += 1
            results.append(
                await session.call(
                    "chat",
                    {"prompt": "remember 7", "model": MODEL, "continuation_id": conversation},
                    slow_id,
                )
            )
            simulator.http.post("/admin/latency", json={"ms": 0}).raise_for_status()
            admin_calls += 1
            for prompt in ("what number?", "and doubled?"):
                results.append(
                    await session.call(
                        "chat", {"prompt": prompt, "model": MODEL, "continuation_id": conversation}
                    )
                )
            # Every attempt rate-limited: the proxy retries (each retry its own HTTP attempt).
            simulator.http.post(
                "/admin/faults",
                json={"mode": "rate_limit", "rate": 1.0, "provider": "kimi", "retry_after_s": 0},
            ).raise_for_status()
            admin_calls += 1
            await session.call(
                "chat", {"prompt": "once more", "model": MODEL, "continuation_id": conversation}
            )
    finally:
        simulator.http.post("/admin/latency", json={"ms": 0}).raise_for_status()
        simulator.clear_faults()
    admin_calls += 2  # the two resets in `finally`
    assert all(r.ok for r in results), [r.frame for r in results]
    calls = len(results) + 1

    after = _settled(prometheus)
    total = _delta(after["total"], before["total"])
    failed = _delta(after["failed"], before["failed"])
    witness = {name: after[name] - before[name] for name in WITNESSES}

    def kept_trace() -> dict[str, Any] | None:
        traces = jaeger.traces_by_correlation_id(slow_id)
        return traces[0] if len(traces) == 1 else None

    trace = eventually(kept_trace, timeout_s=60)
    expected = _expected_edges(trace)
    # The test's own admin calls to the simulator are root server spans too.
    expected.add(("user", "llm-simulator", "virtual_node"))
    hops = {
        ("user", "ws-gateway", "virtual_node"),
        ("ws-gateway", "provider-proxy", ""),
        ("ws-gateway", "storage-adapter", ""),
        ("provider-proxy", "llm-simulator", ""),
    }
    assert hops <= expected, f"the kept trace lacks hops: {sorted(hops - expected)}"
    assert any(e[0] == "storage-adapter" for e in expected), "no storage-adapter client span"
    assert set(total) == expected, (
        f"only in Prometheus: {sorted(set(total) - expected)}; "
        f"only in the spans: {sorted(expected - set(total))}"
    )

    # Each hop counted once, against a witness that is not the service graph.
    assert witness["attempts"] > witness["proxy"], f"no retried attempt: {witness}"
    assert total[("provider-proxy", "llm-simulator", "")] == witness["attempts"], (total, witness)
    assert failed.get(("provider-proxy", "llm-simulator", ""), 0) == witness["attempts_429"], (
        failed,
        witness,
    )
    assert not [e for e in total if e[0] == "provider-proxy" and e[1] != "llm-simulator"]
    assert total[("ws-gateway", "provider-proxy", "")] == witness["proxy"], (total, witness)
    assert total[("ws-gateway", "storage-adapter", "")] == witness["storage"], (total, witness)
    assert total[("user", "ws-gateway", "virtual_node")] == calls, total
    assert total[("user", "llm-simulator", "virtual_node")] == admin_calls, total
