"""The secrets suite, process level (issue 8): with known provider API keys, client
tokens, internal tokens and a database password configured, drive all four services
on loopback — successful calls, streams, memory, consensus, both protocols, provider
faults with retries, refused tokens, unparsable requests — then scan every log line
(stdout JSON and OTLP records), every exported span and every metric: 0 hits.

The log handlers here scrub with no registered secrets (bearer and query-parameter
rules only): a service must not log a secret in the first place; the registry is the
safety net, not the mechanism. Spans go through each service's own exporter and
registry, as in production. The end-to-end suite scans the real stack's stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import secrets
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from mcp import ClientSession
from mcp.client.websocket import websocket_client
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from exai_telemetry.logs import attach_otlp_logs, configure_logging, detach_otlp_logs
from exai_telemetry.redaction import SecretRegistry
from llm_simulator.app import create_app as create_simulator
from llm_simulator.settings import SimulatorSettings
from provider_proxy.app import create_app as create_proxy
from provider_proxy.settings import ProxySettings
from storage_adapter.app import create_app as create_storage
from storage_adapter.settings import StorageSettings
from tests.integration.storage_adapter.conftest import create_database
from tests.integration.ws_gateway.stack import NativeClient
from tests.support.asgi import serve_app
from tests.support.internal_auth import (
    PROVIDER_TOKEN,
    SIMULATOR_ADMIN_TOKEN,
    STORAGE_TOKEN,
    SimulatorAdminAuth,
    bearer,
)
from tests.support.servers import PostgresServer
from tests.support.telemetry import CapturedTelemetry
from ws_gateway.server import Gateway, create_gateway
from ws_gateway.settings import GatewaySettings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings(
        "ignore:The WebSocket client transport is deprecated:DeprecationWarning"
    ),
]

# Recognisable, random per run: a hit can only come from this run's configuration.
RUN = secrets.token_hex(6)
KIMI_KEY = f"sk-scan-kimi-{RUN}-0123456789"
GLM_KEY = f"scan-glm-{RUN}.abcdef0123"
CLIENT_TOKEN = f"client-a-token-{RUN}-0123"
OTHER_CLIENT_TOKEN = f"client-b-token-{RUN}-4567"
DB_PASSWORD = f"pg-pass-{RUN}-secret"
# Presented by callers but wrong: still never recorded (it may be a typo of a real one).
WRONG_CLIENT_TOKEN = f"wrong-client-token-{RUN}-89"
WRONG_INTERNAL_TOKEN = f"wrong-internal-token-{RUN}-89"
SECRETS = {
    "KIMI_API_KEY": KIMI_KEY,
    "GLM_API_KEY": GLM_KEY,
    "EXAI_WS_TOKEN": CLIENT_TOKEN,
    "EXAI_WS_TOKENS (team-b)": OTHER_CLIENT_TOKEN,
    "EXAI_PROVIDER_TOKEN": PROVIDER_TOKEN,
    "EXAI_STORAGE_TOKEN": STORAGE_TOKEN,
    "EXAI_SIMULATOR_ADMIN_TOKEN": SIMULATOR_ADMIN_TOKEN,
    "database password": DB_PASSWORD,
    "a wrong client token": WRONG_CLIENT_TOKEN,
    "a wrong internal token": WRONG_INTERNAL_TOKEN,
}


@dataclass
class Deployment:
    urls: dict[str, str]
    gateway: Gateway
    readers: dict[str, InMemoryMetricReader] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def deployment(captured: CapturedTelemetry, database_url: str) -> AsyncIterator[Deployment]:
    readers: dict[str, InMemoryMetricReader] = {}
    async with contextlib.AsyncExitStack() as stack:
        sim_settings = SimulatorSettings.model_validate(
            {"EXAI_SIMULATOR_ADMIN_TOKEN": SIMULATOR_ADMIN_TOKEN, "SIM_HANG_S": 30}
        )
        telemetry, readers["llm-simulator"] = captured.build("llm-simulator", sim_settings)
        sim_url = await stack.enter_async_context(
            serve_app(create_simulator(sim_settings, telemetry))
        )
        proxy_settings = ProxySettings.model_validate(
            {
                "KIMI_API_KEY": KIMI_KEY,
                "KIMI_BASE_URL": f"{sim_url}/v1",
                "GLM_API_KEY": GLM_KEY,
                "GLM_BASE_URL": f"{sim_url}/api/paas/v4",
                "EXAI_RETRY_BASE_DELAY_S": 0.01,
                "EXAI_RETRY_MAX_DELAY_S": 0.05,
                "EXAI_PROVIDER_TOKEN": PROVIDER_TOKEN,
            }
        )
        telemetry, readers["provider-proxy"] = captured.build("provider-proxy", proxy_settings)
        proxy_url = await stack.enter_async_context(
            serve_app(create_proxy(proxy_settings, telemetry))
        )
        storage_settings = StorageSettings.model_validate(
            {
                "EXAI_DATABASE_URL": database_url,
                "SUPABASE_URL": None,
                "SUPABASE_KEY": None,
                "REDIS_URL": None,
                "EXAI_STORAGE_TOKEN": STORAGE_TOKEN,
            }
        )
        telemetry, readers["storage-adapter"] = captured.build("storage-adapter", storage_settings)
        storage_url = await stack.enter_async_context(
            serve_app(create_storage(storage_settings, telemetry))
        )
        gateway_settings = GatewaySettings.model_validate(
            {
                "EXAI_WS_TOKEN": CLIENT_TOKEN,
                "EXAI_WS_TOKENS": json.dumps({"team-b": OTHER_CLIENT_TOKEN}),
                "EXAI_WS_PORT": 0,
                "EXAI_PROVIDER_URL": proxy_url,
                "EXAI_STORAGE_URL": storage_url,
                "EXAI_PROVIDER_TOKEN": PROVIDER_TOKEN,
                "EXAI_STORAGE_TOKEN": STORAGE_TOKEN,
                "EXAI_SHUTDOWN_GRACE_S": 1,
            }
        )
        telemetry, readers["ws-gateway"] = captured.build("ws-gateway", gateway_settings)
        gateway = await stack.enter_async_context(create_gateway(gateway_settings, telemetry))
        urls = {
            "llm-simulator": sim_url,
            "provider-proxy": proxy_url,
            "storage-adapter": storage_url,
        }
        yield Deployment(urls, gateway, readers)


@dataclass
class CapturedLogs:
    stdout: io.StringIO
    otlp: InMemoryLogRecordExporter

    def dump(self) -> str:
        records = [r.log_record for r in self.otlp.get_finished_logs()]
        otlp = [
            json.dumps({"body": str(r.body), "attributes": dict(r.attributes or {})}, default=str)
            for r in records
        ]
        return self.stdout.getvalue() + "\n".join(otlp)


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[CapturedLogs]:
    """Every record at DEBUG, as JSON lines and as OTLP records, scrubbed only by the
    patterns (no registered secret)."""
    stdout = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stdout)
    root = logging.getLogger()
    level = root.level
    configure_logging("scan", "DEBUG", SecretRegistry())
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    attach_otlp_logs(provider, "DEBUG", SecretRegistry())
    try:
        yield CapturedLogs(stdout, exporter)
    finally:
        detach_otlp_logs()
        provider.shutdown()
        for handler in list(root.handlers):
            if handler.get_name() == "exai-json":
                root.removeHandler(handler)
        root.setLevel(level)


async def drive(deployment: Deployment) -> dict[str, int]:
    """Everything a deployment sees in a day, in a few seconds; counts for sanity."""
    gateway = deployment.gateway
    seen = {"ok": 0, "failed": 0, "refused": 0}
    # Native protocol, two clients: chat with memory, a stream, consensus, the rest.
    for token, cid in ((CLIENT_TOKEN, f"scan-a-{RUN}"), (OTHER_CLIENT_TOKEN, f"scan-b-{RUN}")):
        async with connect(gateway.url, open_timeout=5) as ws:
            client = NativeClient(ws)
            assert (await client.hello(token))["ok"] is True
            for index, (name, arguments) in enumerate(
                [
                    ("chat", {"prompt": "remember the number 7", "continuation_id": cid}),
                    ("chat", {"prompt": "which number?", "continuation_id": cid}),
                    ("consensus", {"prompt": "two views"}),
                    ("listmodels", {}),
                    ("status", {}),
                ]
            ):
                frames = await client.run(name, arguments, f"r{index}")
                assert frames[-1]["op"] == "call_tool_res", frames[-1]
                seen["ok"] += 1
            frames = await client.run("chat", {"prompt": "stream it"}, "s1", stream=True)
            assert frames[-1]["op"] == "call_tool_res", frames[-1]
    # A wrong client token, in a hello and in an MCP upgrade URL.
    async with connect(gateway.url, open_timeout=5) as ws:
        ack = await NativeClient(ws).hello(WRONG_CLIENT_TOKEN)
        assert ack["ok"] is False
        seen["refused"] += 1
    with pytest.raises(InvalidStatus):
        async with connect(
            f"{gateway.url}/mcp?token={WRONG_CLIENT_TOKEN}",
            subprotocols=["mcp"],  # type: ignore[list-item]
        ):
            pass
    seen["refused"] += 1
    # MCP with the token in the query string (the official SDK's only way).
    async with (
        websocket_client(f"{gateway.url}/mcp?token={CLIENT_TOKEN}") as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.call_tool("chat", {"prompt": "hello over MCP"})
        assert result.isError is False
        seen["ok"] += 1
    # Provider faults: GLM fails (retried, then an error), then recovers.
    async with httpx.AsyncClient(
        base_url=deployment.urls["llm-simulator"], auth=SimulatorAdminAuth(), timeout=10
    ) as admin:
        (
            await admin.post("/admin/faults", json={"mode": "error_500", "provider": "glm"})
        ).raise_for_status()
        async with connect(gateway.url, open_timeout=5) as ws:
            client = NativeClient(ws)
            await client.hello(CLIENT_TOKEN)
            frames = await client.run("chat", {"prompt": "fail me", "model": "glm-4.5"}, "f1")
            assert frames[-1]["op"] == "error", frames[-1]
            seen["failed"] += 1
        (await admin.post("/admin/faults", json={"mode": "none"})).raise_for_status()
    # Callers without the internal token, or with a wrong one.
    async with httpx.AsyncClient(timeout=10) as http:
        for name, path in (
            ("provider-proxy", "/v1/models"),
            ("storage-adapter", f"/v1/conversations/scan-a-{RUN}"),
            ("llm-simulator", "/admin/stats"),
        ):
            for headers in ({}, bearer(WRONG_INTERNAL_TOKEN)):
                response = await http.get(f"{deployment.urls[name]}{path}", headers=headers)
                assert response.status_code == 401
                seen["refused"] += 1
    # A request line websockets cannot parse, the token in its query string.
    port = int(gateway.url.rsplit(":", 1)[1].strip("/"))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /mcp?token={CLIENT_TOKEN} HTTP/1.0\r\nHost: gw\r\n\r\n".encode())
    await writer.drain()
    await asyncio.wait_for(reader.read(), 10)
    writer.close()
    seen["refused"] += 1
    return seen


def metrics_dump(readers: dict[str, InMemoryMetricReader]) -> str:
    parts = []
    for reader in readers.values():
        data = reader.get_metrics_data()
        if data is not None:
            parts.append(data.to_json())
    return "\n".join(parts)


async def test_no_secret_in_any_log_line_span_or_metric(
    captured: CapturedTelemetry,
    logs: CapturedLogs,
    postgres_srv: PostgresServer,
) -> None:
    # Trust auth on the test server: the password is configured, sent, never needed.
    database_url = (await create_database(postgres_srv)).replace(
        "postgresql://exai@", f"postgresql://exai:{DB_PASSWORD}@"
    )
    assert DB_PASSWORD in database_url
    async with deployment(captured, database_url) as running:
        seen = await drive(running)
        # Let the last server spans end (they end just after their responses).
        await asyncio.sleep(0.5)
        metrics = metrics_dump(running.readers)
    spans = captured.spans()
    span_dump = "\n".join(span.to_json(indent=None) for span in spans)
    log_dump = logs.dump()

    # Not a vacuous scan: the traffic happened and was recorded.
    assert seen["ok"] >= 11 and seen["failed"] == 1 and seen["refused"] >= 9, seen
    services = {str(s.resource.attributes["service.name"]) for s in spans}
    assert services == {"ws-gateway", "provider-proxy", "storage-adapter", "llm-simulator"}
    assert len(spans) > 50
    assert "gen_ai.client.token.usage" in metrics and "exai.gateway.calls" in metrics
    assert "refused GET /v1/models: invalid_token" in log_dump
    assert "opening handshake failed" in log_dump

    hits = {
        (where, name)
        for where, dump in (("logs", log_dump), ("spans", span_dump), ("metrics", metrics))
        for name, value in SECRETS.items()
        if value in dump
    }
    assert not hits, f"secrets found: {sorted(hits)}"
    for where, dump in (("spans", span_dump), ("metrics", metrics)):
        assert "Bearer " not in dump, where
