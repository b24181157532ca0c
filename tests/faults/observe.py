"""What the fault suite reads and steers besides the gateway: the simulator's admin API,
Prometheus, Alertmanager's deliveries (the tests' webhook), the database behind
storage-adapter, storage-adapter's own API and the gateway's readiness."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from tests.e2e.helpers import AlertWebhook

SIMULATOR = "http://127.0.0.1:8099"
PROMETHEUS = "http://127.0.0.1:9090"
STORAGE = "http://127.0.0.1:8091"
DATABASE = "postgresql://exai@127.0.0.1:5432/postgres"
GATEWAY_READY = "http://127.0.0.1:8079/health/ready"


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


class Simulator:
    """The llm-simulator's admin API (DESIGN §4b)."""

    def __init__(self, admin_token: str | None) -> None:
        self.http = httpx.AsyncClient(base_url=SIMULATOR, timeout=10, headers=bearer(admin_token))

    async def fault(self, mode: str, provider: str | None = None) -> None:
        body: dict[str, Any] = {"mode": mode, "rate": 1.0}
        if provider:
            body["provider"] = provider
        (await self.http.post("/admin/faults", json=body)).raise_for_status()

    async def clear(self) -> None:
        (await self.http.post("/admin/faults", json={"mode": "none"})).raise_for_status()

    async def latency(self, tokens_per_s: float) -> None:
        response = await self.http.post("/admin/latency", json={"tokens_per_s": tokens_per_s})
        response.raise_for_status()

    async def stats(self) -> dict[str, Any]:
        response = await self.http.get("/admin/stats")
        response.raise_for_status()
        return dict(response.json())


class Prometheus:
    def __init__(self) -> None:
        self.http = httpx.AsyncClient(base_url=PROMETHEUS, timeout=10)

    async def query(self, promql: str) -> list[dict[str, Any]]:
        response = await self.http.get("/api/v1/query", params={"query": promql})
        response.raise_for_status()
        return list(response.json()["data"]["result"])

    async def scalar(self, promql: str) -> float | None:
        result = await self.query(promql)
        return float(result[0]["value"][1]) if result else None

    async def active_alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts, with their labels."""
        response = await self.http.get("/api/v1/alerts")
        response.raise_for_status()
        return list(response.json()["data"]["alerts"])


@dataclass(frozen=True)
class AlertMatch:
    """The alerts that answer one fault: any of `names`, with these label values."""

    names: frozenset[str]
    labels: Mapping[str, str] = field(default_factory=dict)

    def __call__(self, labels: Mapping[str, str]) -> bool:
        return labels.get("alertname") in self.names and all(
            labels.get(k) == v for k, v in self.labels.items()
        )

    def __str__(self) -> str:
        where = ",".join(f'{k}="{v}"' for k, v in self.labels.items())
        return "|".join(sorted(self.names)) + (f"{{{where}}}" if where else "")


def fingerprint(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


@dataclass
class Alerts:
    """Alerts as a pager sees them: Alertmanager's webhook deliveries (time-stamped on
    arrival, `time.monotonic()`), cross-checked with Prometheus' active alerts."""

    webhook: AlertWebhook
    prometheus: Prometheus

    def deliveries(self, match: AlertMatch) -> list[tuple[float, str, dict[str, str]]]:
        """(arrival, status, labels) of every delivered alert `match` accepts, in order."""
        with self.webhook.lock:
            delivered = list(self.webhook.deliveries)
        return [
            (arrived, alert["status"], alert["labels"])
            for arrived, payload in delivered
            for alert in payload.get("alerts", [])
            if match(alert["labels"])
        ]

    async def firing(
        self, match: AlertMatch, since: float, timeout_s: float
    ) -> list[dict[str, str]]:
        """Wait for the first firing delivery after `since`; the labels of every matching
        alert firing in it. The arrival time is `first_arrival(...)`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            fired = [
                (t, labels)
                for t, status, labels in self.deliveries(match)
                if t >= since and status == "firing"
            ]
            if fired:
                first = fired[0][0]
                return [labels for t, labels in fired if t == first]
            await asyncio.sleep(1)
        active = [a["labels"] for a in await self.prometheus.active_alerts() if match(a["labels"])]
        raise AssertionError(
            f"no firing {match} delivered within {timeout_s:.0f}s (active in Prometheus: {active})"
        )

    def first_arrival(self, match: AlertMatch, status: str, since: float) -> float | None:
        times = [t for t, s, _ in self.deliveries(match) if t >= since and s == status]
        return min(times) if times else None

    async def resolved(
        self, fired: Iterable[Mapping[str, str]], since: float, timeout_s: float
    ) -> float:
        """Wait until every alert in `fired` was delivered as resolved after `since`; the
        arrival of the last of those deliveries."""
        wanted = {fingerprint(labels) for labels in fired}
        names = frozenset(dict(f)["alertname"] for f in wanted)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done: dict[tuple[tuple[str, str], ...], float] = {}
            for t, status, labels in self.deliveries(AlertMatch(names)):
                key = fingerprint(labels)
                if key in wanted and t >= since and status == "resolved":
                    done.setdefault(key, t)
            if set(done) == wanted:
                return max(done.values())
            await asyncio.sleep(1)
        raise AssertionError(f"not resolved within {timeout_s:.0f}s: {sorted(wanted)}")

    async def quiet(self, match: AlertMatch, timeout_s: float) -> None:
        """Wait until no matching alert is pending or firing in Prometheus and every
        matching alert Alertmanager delivered as firing was delivered as resolved since:
        only then is a new firing delivery news (Alertmanager does not notify again for
        an alert it still believes firing)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            last: dict[tuple[tuple[str, str], ...], str] = {}
            for _, status, labels in self.deliveries(match):
                last[fingerprint(labels)] = status
            active = [a for a in await self.prometheus.active_alerts() if match(a["labels"])]
            if not active and all(status == "resolved" for status in last.values()):
                return
            await asyncio.sleep(2)
        raise AssertionError(f"{match} still active after {timeout_s:.0f}s")


class Store:
    """The durable store behind storage-adapter (the stack's Postgres), read directly:
    what is really stored, whatever the API or its cache say."""

    async def messages(self, continuation_ids: Iterable[str]) -> dict[tuple[str, str, str], int]:
        """(continuation_id, role, content) → how many times it is stored."""
        connection = await asyncpg.connect(DATABASE, timeout=10)
        try:
            rows = await connection.fetch(
                """
                SELECT c.continuation_id, m.role, m.content, count(*) AS n
                FROM messages m JOIN conversations c ON c.id = m.conversation_id
                WHERE c.continuation_id = ANY($1::text[])
                GROUP BY c.continuation_id, m.role, m.content
                """,
                sorted(set(continuation_ids)),
            )
        finally:
            await connection.close()
        return {(r["continuation_id"], r["role"], r["content"]): int(r["n"]) for r in rows}


class StorageApi:
    """storage-adapter's own API (DESIGN §5): what the gateway reads back as memory."""

    def __init__(self, token: str | None) -> None:
        self.http = httpx.AsyncClient(base_url=STORAGE, timeout=10, headers=bearer(token))

    async def history(self, continuation_id: str) -> list[tuple[str, str]] | None:
        response = await self.http.get(
            f"/v1/conversations/{continuation_id}", params={"limit": 1000}
        )
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return [(m["role"], m["content"]) for m in response.json()["messages"]]


async def gateway_readiness() -> int:
    """The HTTP status of the gateway's readiness probe (200 ready, 503 not)."""
    async with httpx.AsyncClient(timeout=10) as http:
        return (await http.get(GATEWAY_READY)).status_code
