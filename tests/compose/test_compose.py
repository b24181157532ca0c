"""The compose stack, for real: `docker compose up` as an operator runs it, then the
checks the end-to-end suite makes against `make run`, and what compose itself must
survive (a restarted service, a crashed collector, `down` then `up`).

Cheap checks first; the ones that restart or recreate containers come last.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from exai_contracts.ids import CLIENT_ID_HEADER, DEFAULT_CLIENT_ID
from tests.e2e.helpers import (
    CallResult,
    GatewaySession,
    Prometheus,
    Simulator,
    drive_provider_traffic,
    eventually,
    settled,
)
from tests.support.compose import ComposeStack

pytestmark = pytest.mark.compose

KIMI_MODEL = "kimi-k2-0905-preview"
OUR_SERVICES = ("ws-gateway", "provider-proxy", "storage-adapter", "llm-simulator")
CHAT_SPAN = 'span_name="ws call_tool chat",service_name="ws-gateway"'
CHAT_CALLS = f"sum(traces_spanmetrics_calls_total{{{CHAT_SPAN}}})"
GATEWAY_CHAT_CALLS = 'sum(exai_gateway_calls_total{exai_tool="chat"})'
# Containers that write nothing outside their volumes and tmpfs run with a read-only
# root file system. Postgres (its entrypoint writes the socket directory) and the
# upstream Grafana, Tempo and Loki images are left as their images expect.
READ_ONLY = {
    *OUR_SERVICES,
    "redis",
    "otel-collector",
    "prometheus",
    "alertmanager",
    "alert-webhook",
}
# Who may read each service-to-service token: the callee and its callers.
TOKEN_READERS = {
    "provider-token": {"ws-gateway", "provider-proxy"},
    "storage-token": {"ws-gateway", "storage-adapter"},
    "simulator-admin-token": {"llm-simulator"},
}


# ------------------------------------------------------------------ helpers


def prometheus(stack: ComposeStack) -> Prometheus:
    return Prometheus(stack.compose.url("prometheus", 9090))


def simulator(stack: ComposeStack) -> Simulator:
    token = stack.internal_token("llm-simulator", "simulator-admin")
    return Simulator(token, stack.compose.url("llm-simulator", 8099))


def storage(stack: ComposeStack) -> httpx.Client:
    token = stack.internal_token("storage-adapter", "storage")
    return httpx.Client(
        base_url=stack.compose.url("storage-adapter", 8091),
        headers={"Authorization": f"Bearer {token}", CLIENT_ID_HEADER: DEFAULT_CLIENT_ID},
        timeout=10,
    )


async def chat(
    stack: ComposeStack, n: int, *, continuation_id: str | None = None, prefix: str = "compose"
) -> list[CallResult]:
    results = []
    async with GatewaySession.open(stack.ws_token, stack.gateway_url) as session:
        for i in range(n):
            arguments: dict[str, Any] = {"prompt": f"{prefix} question {i}", "model": KIMI_MODEL}
            if continuation_id:
                arguments["continuation_id"] = continuation_id
            results.append(await session.call("chat", arguments))
    return results


def exai_trace(stack: ComposeStack, correlation_id: str) -> dict[str, Any]:
    """`exai trace --json` run where an operator runs it: inside the gateway container."""
    where = (
        []
        if stack.upstream  # the container's EXAI_TEMPO_URL and EXAI_LOKI_URL
        else [
            "--backend=jaeger",
            "--jaeger-url=http://tempo:16686",
            "--logs=file",
            "--log-file=/var/lib/log-sink/logs.jsonl",
        ]
    )
    out = stack.compose.exec(
        "ws-gateway",
        "exai",
        "trace",
        correlation_id,
        "--wait",
        "60",
        "--json",
        *where,
        timeout_s=120,
    )
    return dict(json.loads(out))


# ------------------------------------------------------------------ the stack as started


def test_every_container_is_up_healthy_non_root_and_read_only_where_it_can_be(
    compose_stack: ComposeStack,
) -> None:
    containers = {c["Service"]: c for c in compose_stack.compose.containers(all_states=True)}
    expected = {*READ_ONLY, "postgres", "tempo", "loki", "internal-tokens"}
    if compose_stack.upstream:
        expected.add("grafana")
    assert expected <= containers.keys(), sorted(containers)
    one_shot = containers.pop("internal-tokens")
    assert one_shot["State"] == "exited" and one_shot["ExitCode"] == 0, one_shot
    for service, container in containers.items():
        assert container["State"] == "running", (service, container["Status"])
        assert "unhealthy" not in container["Status"] and "starting" not in container["Status"]
    for service in OUR_SERVICES:
        assert "(healthy)" in containers[service]["Status"], containers[service]["Status"]
    # Every image built here runs as a non-root user; of the upstream ones, some start as
    # root and drop privileges themselves (redis), so there only ours are checked.
    non_root = set(containers) if not compose_stack.upstream else {*OUR_SERVICES, "alert-webhook"}
    for service in containers:
        config = compose_stack.compose.inspect(service)
        user = config["Config"]["User"]
        if service in non_root:
            assert user.split(":")[0] not in ("", "0", "root"), f"{service} runs as root"
        if service in READ_ONLY:
            assert config["HostConfig"]["ReadonlyRootfs"], f"{service} root fs is writable"


def test_each_internal_token_is_mounted_only_by_the_services_that_use_it(
    compose_stack: ComposeStack,
) -> None:
    compose = compose_stack.compose
    mounted_by: dict[str, set[str]] = {}
    for container in compose.containers():
        service = container["Service"]
        for mount in compose.inspect(service)["Mounts"]:
            if mount["Type"] == "volume":
                volume = mount["Name"].removeprefix(f"{compose.project}_")
                mounted_by.setdefault(volume, set()).add(service)
                if volume in TOKEN_READERS:
                    assert not mount["RW"], f"{service} can write {volume}"
    for volume, readers in TOKEN_READERS.items():
        assert mounted_by.get(volume) == readers, (volume, mounted_by.get(volume))
    # Only the services' user may read the file (the internal-tokens job wrote it).
    mode = compose.exec("provider-proxy", "stat", "-c", "%a %u", "/run/exai/provider/token")
    assert mode.split() == ["400", "10001"]


# ------------------------------------------------------------------ what end-to-end proves


async def test_a_call_is_followed_by_its_correlation_id_across_all_four_services(
    compose_stack: ComposeStack,
) -> None:
    """The operator's one step: `exai trace <id>` in the gateway container shows the call's
    spans from every service and its log lines. A rate-limited call: kept by tail sampling
    (an error), and the proxy logs each retry."""
    sim = simulator(compose_stack)
    correlation_id = f"compose-follow-{uuid.uuid4()}"
    sim.set_fault("rate_limit", 1.0, provider="kimi", retry_after_s=0)
    try:
        async with GatewaySession.open(compose_stack.ws_token, compose_stack.gateway_url) as s:
            result = await s.call(
                "chat",
                {"prompt": "follow me", "model": KIMI_MODEL, "continuation_id": "follow-1"},
                correlation_id,
            )
    finally:
        sim.clear_faults()
        sim.http.close()
    assert result.frame["op"] == "error", result.frame
    assert result.frame["error"]["code"] == "PROVIDER_ERROR"

    def complete() -> dict[str, Any] | None:
        doc = exai_trace(compose_stack, correlation_id)
        traces = doc["traces"]
        if len(traces) == 1 and set(OUR_SERVICES) <= set(traces[0]["services"]) and doc["logs"]:
            return doc
        return None

    doc = eventually(complete, timeout_s=90, every_s=3)
    trace = doc["traces"][0]
    root = trace["spans"][0]
    assert (root["name"], root["service"], root["depth"]) == ("ws call_tool chat", "ws-gateway", 0)
    assert [s["name"] for s in trace["spans"] if s["depth"] == 0] == ["ws call_tool chat"]
    attempts = [s["name"] for s in trace["spans"] if s["name"].startswith("attempt ")]
    assert sorted(attempts) == ["attempt 1", "attempt 2", "attempt 3"]
    for span in trace["spans"]:
        assert span["attributes"].get("exai.correlation_id") == correlation_id, span["name"]
    # The request's log lines came through both collectors with their trace and span.
    logs = doc["logs"]
    assert {line["trace_id"] for line in logs} == {trace["trace_id"]}
    span_ids = {s["span_id"] for s in trace["spans"]}
    assert all(line["span_id"] in span_ids for line in logs)
    assert "provider-proxy" in {line["service"] for line in logs}


async def test_span_metrics_count_every_call_through_the_compose_collector(
    compose_stack: ComposeStack,
) -> None:
    prom = prometheus(compose_stack)
    queries = (CHAT_CALLS, GATEWAY_CHAT_CALLS)
    before = settled(lambda: {q: prom.scalar(q) or 0.0 for q in queries}, quiet_s=10, timeout_s=90)
    results = await chat(compose_stack, 30)
    assert all(r.ok for r in results), [r.frame for r in results if not r.ok][:1]
    eventually(lambda: prom.scalar(CHAT_CALLS) == before[CHAT_CALLS] + 30, timeout_s=90)
    eventually(
        lambda: prom.scalar(GATEWAY_CHAT_CALLS) == before[GATEWAY_CHAT_CALLS] + 30, timeout_s=60
    )
    # Every service's own metrics arrive too (the absence alert's gauge).
    reporting = {
        s["metric"]["service_name"] for s in prom.query("otel_sdk_processor_span_queue_capacity")
    }
    assert set(OUR_SERVICES) <= reporting
    prom.http.close()


WEBHOOK_LINE = re.compile(r" alert-webhook (FIRING|RESOLVED) \S+ .*? labels=(\{.*?\}) summary=")


def _webhook_alerts(stack: ComposeStack, status: str) -> list[dict[str, str]]:
    """The labels of each alert the alert-webhook container received, from its log
    (deploy/docker/alert_webhook.py: "<time> alert-webhook FIRING <name> … labels={…} …")."""
    return [
        dict(json.loads(match.group(2)))
        for match in WEBHOOK_LINE.finditer(stack.compose.logs("alert-webhook"))
        if match.group(1) == status.upper()
    ]


def test_a_provider_fault_pages_through_alertmanager_to_the_webhook(
    compose_stack: ComposeStack,
) -> None:
    sim = simulator(compose_stack)
    token = compose_stack.internal_token("provider-proxy", "provider")
    stop, outcomes = threading.Event(), Counter[str]()
    proxy = compose_stack.compose.url("provider-proxy", 8090)
    names = {"ProviderCircuitOpen", "ProviderErrorRatioHigh"}
    sim.set_fault("error_500", 1.0, provider="kimi")
    driver = threading.Thread(
        target=drive_provider_traffic, args=(stop, outcomes, token, proxy), daemon=True
    )
    driver.start()
    try:
        firing = eventually(
            lambda: [
                a
                for a in _webhook_alerts(compose_stack, "firing")
                if a["alertname"] in names and a.get("gen_ai_provider_name") == "kimi"
            ],
            timeout_s=300,
            every_s=5,
        )
    finally:
        stop.set()
        sim.clear_faults()
        driver.join(15)
        sim.http.close()
    assert outcomes["502"] + outcomes["503"] > 0, outcomes
    assert {a["severity"] for a in firing} <= {"page", "ticket"}, firing
    # Prometheus sees the same alert, with the absolute links built from the settings.
    prom = prometheus(compose_stack)
    alerts = [a for a in prom.alerts() if a["labels"]["alertname"] in names]
    assert alerts
    for alert in alerts:
        name = alert["labels"]["alertname"]
        runbook = compose_stack.compose.env["EXAI_RUNBOOK_BASE_URL"]
        assert alert["annotations"]["runbook_url"] == f"{runbook}#{name.lower()}"
    prom.http.close()


def test_no_secret_in_any_container_log_or_the_log_store(compose_stack: ComposeStack) -> None:
    """After the traffic, failures and alerts above: every container's output (all
    services, the stores, the telemetry pipeline) and every exported log record."""
    logs = compose_stack.compose.run("logs", "--no-color", timeout_s=120)
    records = "".join(
        p.read_text(errors="replace") for p in Path(compose_stack.log_dir).glob("*.jsonl")
    )
    assert len(logs) > 10_000 and len(records) > 10_000  # the scan read real output
    for secret in compose_stack.secrets():
        assert secret not in logs, "a secret is in a container log"
        assert secret not in records, "a secret is in the exported log records"


# ------------------------------------------------------------------ what compose must survive


def stored_prompts(stack: ComposeStack, conversation: str) -> list[str]:
    """The user messages of one conversation, as the durable store has them."""
    with storage(stack) as http:
        response = http.get(f"/v1/conversations/{conversation}", params={"limit": 1000})
        response.raise_for_status()
        document = response.json()
    assert not document["has_more"]
    return [m["content"] for m in document["messages"] if m["role"] == "user"]


async def memory_works(stack: ComposeStack) -> bool:
    """A call's exchange is stored right away (the gateway's storage breaker is closed)."""
    (result,) = await chat(stack, 1, continuation_id=f"probe-{uuid.uuid4().hex[:12]}")
    return bool(result.ok and result.frame["metadata"]["memory"]["write"] == "stored")


async def eventually_async(probe: Any, timeout_s: float, every_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await probe():
        assert time.monotonic() < deadline, f"not within {timeout_s}s"
        await asyncio.sleep(every_s)


async def test_a_storage_restart_and_a_collector_crash_during_traffic_lose_nothing(
    compose_stack: ComposeStack, capsys: pytest.CaptureFixture[str]
) -> None:
    compose = compose_stack.compose
    # The provider's breaker may still be cooling down from the fault test.
    await eventually_async(lambda: memory_works(compose_stack), timeout_s=60)
    collector_restarts = compose.inspect("otel-collector")["RestartCount"]
    conversation = f"survive-{uuid.uuid4().hex[:12]}"
    writes: dict[str, list[str]] = {}  # memory write outcome -> prompts
    failures: list[dict[str, Any]] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        async with GatewaySession.open(compose_stack.ws_token, compose_stack.gateway_url) as s:
            i = 0
            while not stop.is_set():
                prompt = f"survive {i}"
                result = await s.call(
                    "chat",
                    {"prompt": prompt, "model": KIMI_MODEL, "continuation_id": conversation},
                )
                if result.ok:
                    outcome = result.frame["metadata"]["memory"]["write"]
                    writes.setdefault(outcome, []).append(prompt)
                else:
                    failures.append(result.frame)
                i += 1
                # A client's pace: under the gateway's per-connection frame rate limit.
                await asyncio.sleep(0.05)

    task = asyncio.create_task(traffic())
    await asyncio.sleep(3)
    # An operator's restart (SIGTERM, drain), then a crash of the collector (SIGKILL of
    # its process, as the kernel's OOM killer would): the restart policy brings it back.
    await asyncio.to_thread(compose.run, "restart", "storage-adapter", timeout_s=120)
    pid = compose.inspect("otel-collector")["State"]["Pid"]
    await asyncio.to_thread(subprocess.run, ["kill", "-9", str(pid)], check=True)
    await asyncio.sleep(10)
    stop.set()
    await asyncio.wait_for(task, 60)

    # The gateway answered throughout: no call failed, whatever memory did meanwhile.
    assert not failures, failures[:2]
    assert len(writes.get("stored", [])) >= 5, writes
    # Every exchange the gateway acknowledged as stored is in Postgres exactly once, and
    # so is every one it was still writing ("pending") once storage is back.
    acknowledged = writes.get("stored", []) + writes.get("pending", [])

    def all_stored() -> list[str] | None:
        stored = stored_prompts(compose_stack, conversation)
        return stored if set(acknowledged) <= set(stored) else None

    stored = eventually(all_stored, timeout_s=60, every_s=2)
    for prompt in acknowledged:
        assert stored.count(prompt) == 1, (prompt, stored)

    # The collector came back by itself and the pipeline carries data again.
    def collector_back() -> bool:
        state = compose.inspect("otel-collector")
        return bool(state["RestartCount"] > collector_restarts and state["State"]["Running"])

    eventually(collector_back, timeout_s=60)
    await eventually_async(lambda: memory_works(compose_stack), timeout_s=60)
    prom = prometheus(compose_stack)
    before = prom.scalar(GATEWAY_CHAT_CALLS) or 0.0
    await chat(compose_stack, 3, prefix="after-crash")
    eventually(lambda: (prom.scalar(GATEWAY_CHAT_CALLS) or 0.0) >= before + 3, timeout_s=90)
    prom.http.close()
    with capsys.disabled():
        print(
            f"\n[compose] memory writes during the restart and crash: "
            f"{ {k: len(v) for k, v in writes.items()} }"
        )


async def test_down_then_up_keeps_conversations_and_internal_tokens(
    compose_stack: ComposeStack,
) -> None:
    compose = compose_stack.compose
    await eventually_async(lambda: memory_works(compose_stack), timeout_s=60)
    conversation = f"keep-{uuid.uuid4().hex[:12]}"
    results = await chat(compose_stack, 2, continuation_id=conversation, prefix="keep")
    assert [r.frame["metadata"]["memory"]["write"] for r in results] == ["stored", "stored"]
    tokens = compose_stack.secrets()

    compose.down(volumes=False)
    assert not compose.containers()
    local = ["--pull", "never", "--no-build"] if not compose_stack.upstream else []
    compose.up(*local)

    # The same tokens (nothing regenerated what the operator's stack already had) ...
    assert compose_stack.secrets() == tokens
    # ... and the conversation, read back through the gateway's memory.
    assert stored_prompts(compose_stack, conversation) == ["keep question 0", "keep question 1"]
    results = await chat(compose_stack, 1, continuation_id=conversation, prefix="again")
    memory = results[0].frame["metadata"]["memory"]
    assert memory["read"] == "loaded" and memory["history_messages"] == 4, memory
