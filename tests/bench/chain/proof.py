"""What the `on` chain exported, counted from the bench collector's files.

Every span: per service, the spans in the traces file equal the spans its SDK's batch
processor took (`otel.sdk.processor.span.processed`, every ended span), none of them
dropped (those carry an `error.type`); every span of a call's trace carries its
correlation ID (spans outside any call, start-up work and storage batches serving many
calls, are listed apart). Every call: one `ws call_tool chat` root per call made, one
correlation ID per call trace, and the correlation IDs the clients got back are all
there. The gateway's `exai.gateway.calls` counter equals the calls made, and its
`exai.gateway.inflight` and `exai.gateway.connections` end at exactly 0.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from exai_telemetry import names
from tests.bench.peers.received import metric_values, span_records

GATEWAY = "ws-gateway"
SERVICES = (GATEWAY, "provider-proxy", "storage-adapter")
CHAT_SPAN = "ws call_tool chat"
CALL_SPANS = frozenset({CHAT_SPAN, "ws call_tool status"})


def prove(
    directory: Path, calls: dict[str, int], client_correlation_ids: Iterable[str]
) -> dict[str, Any]:
    """`calls`: tool → calls made to the `on` chain (answered or not)."""
    spans = list(span_records(directory))
    # A call's trace: the one under its `ws call_tool …` root span at the gateway.
    call_roots = {
        span.trace_id: span.name
        for span in spans
        if span.service == GATEWAY and not span.parent_span_id and span.name in CALL_SPANS
    }
    per_service: Counter[str] = Counter()
    without_correlation: Counter[str] = Counter()
    trace_correlations: defaultdict[str, set[str]] = defaultdict(set)
    trace_spans: Counter[str] = Counter()
    outside_calls: Counter[str] = Counter()
    for span in spans:
        per_service[span.service] += 1
        if span.trace_id not in call_roots:
            outside_calls[f"{span.service}: {span.name}"] += 1
            continue
        trace_spans[span.trace_id] += 1
        if span.correlation_id is None:
            without_correlation[span.service] += 1
        else:
            trace_correlations[span.trace_id].add(span.correlation_id)
    roots = Counter(call_roots.values())
    call_traces = {t for t, name in call_roots.items() if name == CHAT_SPAN}

    processed = metric_values(directory, "otel.sdk.processor.span.processed")
    services: dict[str, dict[str, int]] = {}
    for service in SERVICES:
        services[service] = {
            "received": per_service[service],
            "processed": int(sum(v for (n, _), v in processed.items() if n == service)),
            "dropped": int(
                sum(
                    value
                    for (name, attributes), value in processed.items()
                    if name == service and any(k == "error.type" for k, _ in attributes)
                )
            ),
            "in_calls_without_correlation": without_correlation[service],
        }
    call_ids = [trace_correlations[t] for t in call_traces]
    distinct_ids = set().union(*call_ids) if call_ids else set()
    client_ids = set(client_correlation_ids)
    spans_in_calls = sum(trace_spans[t] for t in call_traces)
    gateway_calls = metric_values(directory, "exai.gateway.calls")
    chat_by_outcome = {
        dict(attributes).get(names.OUTCOME, "?"): int(value)
        for (name, attributes), value in gateway_calls.items()
        if name == GATEWAY and dict(attributes).get(names.TOOL) == "chat"
    }
    inflight = metric_values(directory, "exai.gateway.inflight")
    connections = metric_values(directory, "exai.gateway.connections")
    return {
        "services": services,
        "chat_calls_made": calls.get("chat", 0),
        "chat_root_spans": roots[CHAT_SPAN],
        "root_spans": dict(roots),
        # Start-up work, and work that serves many calls at once (storage batches).
        "spans_outside_calls": dict(outside_calls.most_common()),
        "spans_in_chat_traces": spans_in_calls,
        "spans_per_chat_call": spans_in_calls / len(call_traces) if call_traces else 0.0,
        "chat_traces_with_one_correlation_id": sum(len(ids) == 1 for ids in call_ids),
        "distinct_correlation_ids_in_chat_traces": len(distinct_ids),
        "client_correlation_ids": len(client_ids),
        "client_correlation_ids_missing": len(client_ids - distinct_ids),
        "gateway_chat_calls_metric": sum(chat_by_outcome.values()),
        "gateway_chat_calls_by_outcome": chat_by_outcome,
        "gateway_inflight_final": int(sum(v for (n, _), v in inflight.items() if n == GATEWAY)),
        "gateway_connections_final": int(
            sum(v for (n, _), v in connections.items() if n == GATEWAY)
        ),
    }


def verdict(proof: dict[str, Any]) -> list[tuple[str, bool]]:
    made = proof["chat_calls_made"]
    checks = [
        (
            f"{service}: spans received = processed ({s['received']} = {s['processed']}), "
            f"dropped {s['dropped']}, in call traces without correlation ID "
            f"{s['in_calls_without_correlation']}",
            s["received"] == s["processed"]
            and s["dropped"] == 0
            and s["in_calls_without_correlation"] == 0,
        )
        for service, s in proof["services"].items()
    ]
    checks += [
        (
            f"chat root spans = chat calls made ({proof['chat_root_spans']} = {made}); "
            f"{proof['spans_per_chat_call']:.2f} spans per call, "
            f"{proof['spans_in_chat_traces']} in all",
            proof["chat_root_spans"] == made,
        ),
        (
            "one correlation ID per call: "
            f"{proof['chat_traces_with_one_correlation_id']} traces with exactly one, "
            f"{proof['distinct_correlation_ids_in_chat_traces']} distinct, "
            f"{proof['client_correlation_ids_missing']} of the {proof['client_correlation_ids']} "
            "returned to clients missing",
            proof["chat_traces_with_one_correlation_id"] == made
            and proof["distinct_correlation_ids_in_chat_traces"] == made
            and proof["client_correlation_ids_missing"] == 0,
        ),
        (
            f"exai.gateway.calls (chat) = calls made ({proof['gateway_chat_calls_metric']} = "
            f"{made}; {proof['gateway_chat_calls_by_outcome']})",
            proof["gateway_chat_calls_metric"] == made,
        ),
        (
            f"exai.gateway.inflight at the end: {proof['gateway_inflight_final']}; "
            f"exai.gateway.connections: {proof['gateway_connections_final']}",
            proof["gateway_inflight_final"] == 0 and proof["gateway_connections_final"] == 0,
        ),
    ]
    checks.append((f"spans outside call traces: {proof['spans_outside_calls']}", True))
    return checks
