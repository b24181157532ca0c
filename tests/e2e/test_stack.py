"""End-to-end: the no-Docker stack with the repo's own collector, Prometheus,
Alertmanager and Jaeger configs, driven through the gateway like a user would."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx
import openai
import pytest

from tests.e2e.conftest import GLM_KEY, KIMI_KEY
from tests.e2e.helpers import (
    PROXY,
    AlertWebhook,
    CallResult,
    GatewaySession,
    Jaeger,
    Prometheus,
    Simulator,
    drive_provider_traffic,
    eventually,
    parent_of,
    settled,
    span_services,
    span_tags,
)
from tests.support.stack import RunningStack

pytestmark = pytest.mark.e2e

KIMI_MODEL = "kimi-k2-0905-preview"
GLM_MODEL = "glm-4.5"
TOKEN_MODEL = "moonshot-v1-8k"  # used only by the token-accounting test
CHAT_SPAN = 'span_name="ws call_tool chat",service_name="ws-gateway"'


@dataclass
class Ledger:
    """Every chat call the tests sent through the gateway, by outcome."""

    ok: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    slow: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.ok) + len(self.failed) + len(self.slow)

    def record(self, result: CallResult, *, slow: bool = False) -> None:
        (self.slow if slow else self.ok if result.ok else self.failed).append(result.correlation_id)


LEDGER = Ledger()
CHAT_CALLS = f"sum(traces_spanmetrics_calls_total{{{CHAT_SPAN}}})"
CHAT_ERRORS = (
    f'sum(traces_spanmetrics_calls_total{{{CHAT_SPAN},status_code="STATUS_CODE_ERROR"}})'
    " or vector(0)"
)
GATEWAY_CHAT_CALLS = 'sum(exai_gateway_calls_total{exai_tool="chat"})'


@pytest.fixture(scope="module")
def chat_baseline(stack: RunningStack, prometheus: Prometheus) -> dict[str, float]:
    """Chat calls counted before this module's own (the e2e modules share one stack)."""
    queries = (CHAT_CALLS, CHAT_ERRORS, GATEWAY_CHAT_CALLS)
    return settled(
        lambda: {q: prometheus.scalar(q) or 0.0 for q in queries}, quiet_s=12, timeout_s=90
    )


async def _chat(stack: RunningStack, n: int, model: str, **extra: object) -> list[CallResult]:
    results = []
    async with GatewaySession.open(stack.ws_token) as session:
        for i in range(n):
            result = await session.call(
                "chat", {"prompt": f"e2e question {i}", "model": model, **extra}
            )
            results.append(result)
    return results


async def test_a_request_is_found_in_jaeger_by_its_correlation_id_across_all_services(
    stack: RunningStack, simulator: Simulator, jaeger: Jaeger, chat_baseline: dict[str, float]
) -> None:
    # Over the tail-sampling latency threshold (2 s), so the 10% baseline cannot drop it.
    simulator.http.post("/admin/latency", json={"ms": 2500}).raise_for_status()
    correlation_id = f"e2e-follow-{uuid.uuid4()}"
    try:
        async with GatewaySession.open(stack.ws_token) as session:
            result = await session.call(
                "chat",
                {
                    "prompt": "follow me",
                    "model": KIMI_MODEL,
                    "continuation_id": f"conv-{uuid.uuid4().hex[:12]}",
                },
                correlation_id,
            )
    finally:
        simulator.http.post("/admin/latency", json={"ms": 0}).raise_for_status()
    LEDGER.record(result, slow=True)
    assert result.ok, result.frame
    assert result.frame["correlation_id"] == correlation_id

    def complete_trace() -> dict | None:
        traces = jaeger.traces_by_correlation_id(correlation_id)
        if len(traces) != 1:
            return None
        services = set(span_services(traces[0]).values())
        wanted = {"ws-gateway", "provider-proxy", "storage-adapter", "llm-simulator"}
        return traces[0] if wanted <= services else None

    trace = eventually(complete_trace, timeout_s=60)
    assert trace["traceID"] == result.frame["trace_id"]
    service_of = span_services(trace)
    spans = {s["spanID"]: s for s in trace["spans"]}
    roots = [s for s in trace["spans"] if parent_of(s) is None]
    assert [r["operationName"] for r in roots] == ["ws call_tool chat"]
    assert service_of[roots[0]["spanID"]] == "ws-gateway"
    for span in trace["spans"]:
        assert span_tags(span).get("exai.correlation_id") == correlation_id, span["operationName"]
        parent = parent_of(span)
        assert parent is None or parent in spans, f"{span['operationName']} has a missing parent"

    def server_spans(service: str) -> list[dict]:
        return [
            s
            for s in trace["spans"]
            if service_of[s["spanID"]] == service and span_tags(s).get("span.kind") == "server"
        ]

    # Each hop's server span is the child of the calling service's client span.
    for callee, caller in (
        ("provider-proxy", "ws-gateway"),
        ("storage-adapter", "ws-gateway"),
        ("llm-simulator", "provider-proxy"),
    ):
        assert server_spans(callee), f"no server span from {callee}"
        for span in server_spans(callee):
            parent = spans[parent_of(span)]
            assert service_of[parent["spanID"]] == caller
            assert span_tags(parent).get("span.kind") == "client"


async def test_span_metrics_count_every_call_before_sampling_and_exemplars_resolve(
    stack: RunningStack,
    simulator: Simulator,
    prometheus: Prometheus,
    jaeger: Jaeger,
    chat_baseline: dict[str, float],
) -> None:
    for result in await _chat(stack, 100, KIMI_MODEL):
        LEDGER.record(result)
    simulator.set_fault("error_500", 1.0, provider="glm")
    try:
        for result in await _chat(stack, 10, GLM_MODEL):
            LEDGER.record(result)
    finally:
        simulator.clear_faults()
    assert len(LEDGER.failed) == 10, "every GLM call under error_500 must fail"
    assert len(LEDGER.ok) == 100

    expected_total = chat_baseline[CHAT_CALLS] + LEDGER.total
    eventually(lambda: prometheus.scalar(CHAT_CALLS) == expected_total, timeout_s=90)
    assert prometheus.scalar(CHAT_ERRORS) == chat_baseline[CHAT_ERRORS] + len(LEDGER.failed)
    # The gateway's own counter agrees with the span metrics (once its next periodic
    # export, every 5 s, has landed).
    gateway_total = chat_baseline[GATEWAY_CHAT_CALLS] + LEDGER.total
    eventually(lambda: prometheus.scalar(GATEWAY_CHAT_CALLS) == gateway_total, timeout_s=30)
    # Grafana's Tempo service-graph table groups by `service`: the same value as service_name.
    assert prometheus.scalar(
        'sum(traces_spanmetrics_latency_count{service="ws-gateway",'
        'span_name="ws call_tool chat",span_kind="SPAN_KIND_SERVER"})'
    ) == prometheus.scalar(CHAT_CALLS)

    # Every exemplar Prometheus holds for the chat span — errors AND ordinary calls at 10%
    # sampling — points at a trace that is in Jaeger: exemplars are taken after sampling.
    def exemplar_trace_ids() -> dict[str, set[str]] | None:
        by_status: dict[str, set[str]] = {}
        for series in prometheus.exemplars(
            f"traces_spanmetrics_kept_latency_bucket{{{CHAT_SPAN}}}"
        ):
            status = series["seriesLabels"]["status_code"]
            by_status.setdefault(status, set()).update(
                e["labels"]["trace_id"] for e in series["exemplars"]
            )
        ordinary = by_status.get("STATUS_CODE_UNSET", set()) | by_status.get(
            "STATUS_CODE_OK", set()
        )
        return by_status if ordinary and by_status.get("STATUS_CODE_ERROR") else None

    by_status = eventually(exemplar_trace_ids, timeout_s=60)
    every_trace_id = set().union(*by_status.values())
    missing = {t for t in every_trace_id if jaeger.trace(t) is None}
    assert not missing, f"{len(missing)} of {len(every_trace_id)} exemplars point at no trace"


def test_token_metrics_match_the_usage_the_provider_reported(
    stack: RunningStack, prometheus: Prometheus, internal_tokens: dict[str, str]
) -> None:
    # The SDK's API key is the proxy's internal token (Authorization: Bearer).
    client = openai.OpenAI(
        base_url=f"{PROXY}/v1", api_key=internal_tokens["EXAI_PROVIDER_TOKEN"], max_retries=0
    )
    prompt_tokens = completion_tokens = cached_tokens = 0
    for i in range(5):
        completion = client.chat.completions.create(
            model=TOKEN_MODEL,
            messages=[
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": f"count my tokens {i}"},
            ],
        )
        assert completion.usage is not None
        prompt_tokens += completion.usage.prompt_tokens
        completion_tokens += completion.usage.completion_tokens
        details = completion.usage.prompt_tokens_details
        cached_tokens += (details.cached_tokens or 0) if details else 0
    client.close()
    selector = f'gen_ai_request_model="{TOKEN_MODEL}"'

    def tokens(kind: str) -> float | None:
        return prometheus.scalar(
            f'sum(exai_provider_tokens_total{{{selector},exai_token_type="{kind}"}})'
        )

    eventually(lambda: tokens("output") == completion_tokens, timeout_s=60)
    assert tokens("input") == prompt_tokens
    assert cached_tokens > 0, "the simulator reports cached tokens for multi-message prompts"
    assert tokens("cached") == cached_tokens
    histogram_input = prometheus.scalar(
        f'sum(gen_ai_client_token_usage_sum{{{selector},gen_ai_token_type="input"}})'
    )
    assert histogram_input == prompt_tokens


def test_tail_sampling_keeps_every_failure_and_a_share_of_the_rest(
    stack: RunningStack, jaeger: Jaeger
) -> None:
    assert LEDGER.failed, "runs after the span-metrics test, which produces failures"

    def kept_correlation_ids() -> set[str]:
        kept = set()
        for trace in jaeger.all_traces("ws-gateway"):
            for span in trace["spans"]:
                correlation_id = span_tags(span).get("exai.correlation_id")
                if correlation_id:
                    kept.add(correlation_id)
        return kept

    eventually(lambda: set(LEDGER.failed) <= kept_correlation_ids(), timeout_s=60)
    # Every decision has been taken: each trace is decided 3 s after its root arrives
    # (decision_wait_after_root_received), and every call here has ended.
    time.sleep(8)
    kept = kept_correlation_ids()
    assert set(LEDGER.failed) <= kept
    kept_ok = len(set(LEDGER.ok) & kept)
    # 100 fast successful calls at 10%: binomial mean 10, sd 3.
    assert 1 <= kept_ok <= 25, f"kept {kept_ok} of {len(LEDGER.ok)} ordinary traces"


def test_no_key_or_token_is_stored_in_any_span(
    stack: RunningStack, jaeger: Jaeger, internal_tokens: dict[str, str]
) -> None:
    services = jaeger.services()
    assert {"ws-gateway", "provider-proxy", "storage-adapter", "llm-simulator"} <= set(services)
    dump = json.dumps([jaeger.all_traces(s) for s in services])
    for secret in (KIMI_KEY, GLM_KEY, stack.ws_token, *internal_tokens.values()):
        assert secret not in dump
    assert "Bearer " not in dump


def test_provider_failure_pages_through_alertmanager_and_resolves(
    stack: RunningStack,
    webhook: AlertWebhook,
    simulator: Simulator,
    prometheus: Prometheus,
    capsys: pytest.CaptureFixture[str],
    internal_tokens: dict[str, str],
) -> None:
    # The stack runs the e2e alert timings (conftest overrides), not the production ones.
    names = {"ProviderCircuitOpen", "ProviderErrorRatioHigh"}
    stop, outcomes = threading.Event(), Counter[str]()
    driver = threading.Thread(
        target=drive_provider_traffic,
        args=(stop, outcomes, internal_tokens["EXAI_PROVIDER_TOKEN"]),
        daemon=True,
    )
    fault_at = time.monotonic()
    simulator.set_fault("error_500", 1.0, provider="kimi")
    driver.start()
    try:
        firing = eventually(
            lambda: [
                (t, a)
                for t, a in webhook.alerts("firing", fault_at, names)
                if a["labels"].get("gen_ai_provider_name") == "kimi"
            ],
            timeout_s=300,
            every_s=2,
        )
        fired_after = firing[0][0] - fault_at
        # Absolute links built from the bases the stack was given (prometheus.yml external
        # labels), which stay out of the alert's labels.
        runbook_base, grafana = stack.env["EXAI_RUNBOOK_BASE_URL"], stack.env["EXAI_GRAFANA_URL"]
        for _, alert in firing:
            name = alert["labels"]["alertname"]
            assert alert["annotations"]["runbook_url"] == f"{runbook_base}#{name.lower()}"
            assert alert["annotations"]["dashboard_url"] == f"{grafana}/d/exai-llm"
            assert not {"exai_runbook_base_url", "exai_grafana_url"} & alert["labels"].keys()
        cleared_at = time.monotonic()
        simulator.clear_faults()
        fired_names = {a["labels"]["alertname"] for _, a in firing}
        resolved = eventually(
            lambda: [
                (t, a)
                for t, a in webhook.alerts("resolved", cleared_at, fired_names)
                if a["labels"].get("gen_ai_provider_name") == "kimi"
            ],
            timeout_s=360,
            every_s=2,
        )
        resolved_after = resolved[0][0] - cleared_at
    finally:
        stop.set()
        simulator.clear_faults()
        driver.join(15)
    assert outcomes["200"] > 0 and (outcomes["502"] + outcomes["503"]) > 0
    # ServiceTelemetryAbsent watches each service's always-exported SDK gauge: it is there
    # for every service, so the absence alert is quiet on a healthy stack.
    reporting = {
        s["metric"]["service_name"]
        for s in prometheus.query("otel_sdk_processor_span_queue_capacity")
    }
    assert {"ws-gateway", "provider-proxy", "storage-adapter"} <= reporting
    assert not [
        a for a in prometheus.alerts() if a["labels"]["alertname"] == "ServiceTelemetryAbsent"
    ]
    with capsys.disabled():
        print(
            f"\n[e2e] provider fault → webhook delivery: {fired_after:.0f}s "
            f"({sorted(fired_names)}); fault cleared → resolved: {resolved_after:.0f}s"
        )


def test_no_key_or_token_in_any_log_line_metric_series_or_alert(
    stack: RunningStack,
    prometheus: Prometheus,
    webhook: AlertWebhook,
    internal_tokens: dict[str, str],
) -> None:
    """After every other test here (traffic, failures, the alert that fired and resolved):
    the secrets scan over what an operator reads besides spans."""
    secrets = (KIMI_KEY, GLM_KEY, stack.ws_token, *internal_tokens.values())
    # Every log line every process of the stack wrote (stdout/stderr files, OTLP log export).
    log_files = [*(stack.var / "logs").glob("*.log"), *(stack.var / "telemetry").rglob("*")]
    logs = "\n".join(p.read_text(errors="replace") for p in log_files if p.is_file())
    assert len(logs) > 10_000  # the scan read real logs
    # Every series Prometheus holds, with every label.
    series = prometheus.http.get("/federate", params={"match[]": '{__name__=~".+"}'})
    series.raise_for_status()
    assert "exai_gateway_calls_total" in series.text
    # Every alert: Prometheus' view, Alertmanager's, and every webhook delivery.
    alertmanager = httpx.get("http://127.0.0.1:9093/api/v2/alerts", timeout=10)
    alertmanager.raise_for_status()
    with webhook.lock:
        deliveries = json.dumps([payload for _, payload in webhook.deliveries])
    assert deliveries != "[]"  # the alert test above delivered something to scan
    alerts = json.dumps(prometheus.alerts()) + alertmanager.text + deliveries
    for where, text in (("logs", logs), ("metrics", series.text), ("alerts", alerts)):
        for secret in secrets:
            assert secret not in text, f"a secret is in the {where}"
