"""The gateway's storage-adapter client against the real storage-adapter: what is
retried and what is not, path safety, and the client's identity on every request."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.integration.ws_gateway.stack import Stack
from tests.support.faulty_http import hanging_server
from tests.support.internal_auth import STORAGE_TOKEN, bearer
from tests.support.servers import free_port
from ws_gateway.breaker import CircuitBreaker
from ws_gateway.clients import (
    StorageCircuitOpen,
    StorageClient,
    StorageRejected,
    StorageUnavailable,
)
from ws_gateway.memory import ConversationMemory, NewMessage

pytestmark = pytest.mark.integration

BUDGET_S = 5.0


@dataclass
class Seen:
    requests: list[httpx.Request] = field(default_factory=list)


@pytest.fixture
async def seen() -> Seen:
    return Seen()


async def client_for(url: str, seen: Seen) -> httpx.AsyncClient:
    async def record(request: httpx.Request) -> None:
        seen.requests.append(request)

    return httpx.AsyncClient(
        base_url=url, headers=bearer(STORAGE_TOKEN), event_hooks={"request": [record]}
    )


@pytest.fixture
async def storage(stack: Stack, seen: Seen) -> AsyncIterator[StorageClient]:
    http = await client_for(stack.storage_url, seen)
    yield StorageClient(http, timeout_s=2)
    await http.aclose()


async def test_a_4xx_is_not_retried(storage: StorageClient, seen: Seen) -> None:
    cid = f"conv-{uuid.uuid4().hex[:8]}"
    await storage.create(cid, client_id="alice", budget_s=BUDGET_S)
    seen.requests.clear()
    with pytest.raises(StorageRejected) as info:
        # storage-adapter refuses the role: 422, the same request can never succeed.
        await storage.append(cid, "robot", "hi", "key-1", client_id="alice", budget_s=BUDGET_S)
    assert info.value.status == 422
    assert len(seen.requests) == 1
    assert storage.breaker.state == "closed"  # storage answered: it is not failing


async def test_a_missing_conversation_is_none_and_not_retried(
    storage: StorageClient, seen: Seen
) -> None:
    assert await storage.history("no-such-conv", client_id="alice", budget_s=BUDGET_S) is None
    assert len(seen.requests) == 1


@pytest.mark.parametrize("cid", ["..", ".", "ab", "v1.2", "p:1", "a/b", "a?b=c", "x" * 129])
async def test_an_id_that_is_not_a_safe_path_segment_is_refused_without_a_request(
    storage: StorageClient, seen: Seen, cid: str
) -> None:
    for call in (
        storage.history(cid, client_id="alice", budget_s=BUDGET_S),
        storage.create(cid, client_id="alice", budget_s=BUDGET_S),
        storage.append(cid, "user", "hi", "k", client_id="alice", budget_s=BUDGET_S),
    ):
        with pytest.raises(StorageRejected):
            await call
    assert seen.requests == []


async def test_every_request_names_the_client(storage: StorageClient, seen: Seen) -> None:
    cid = f"conv-{uuid.uuid4().hex[:8]}"
    assert await storage.history(cid, client_id="alice", budget_s=BUDGET_S) is None
    await storage.create(cid, client_id="alice", budget_s=BUDGET_S)
    await storage.append(cid, "user", "hi", f"{cid}-u", client_id="alice", budget_s=BUDGET_S)
    history = await storage.history(cid, client_id="alice", budget_s=BUDGET_S)
    assert history is not None and [m.content for m in history] == ["hi"]
    assert len(seen.requests) == 4
    assert [r.headers["X-EXAI-Client-ID"] for r in seen.requests] == ["alice"] * 4


async def test_an_unreachable_storage_is_retried_then_unavailable(seen: Seen) -> None:
    http = await client_for(f"http://127.0.0.1:{free_port()}", seen)
    storage = StorageClient(http, timeout_s=1, breaker=CircuitBreaker(100, 10))
    async with http:
        with pytest.raises(StorageUnavailable):
            await storage.history("conv-1", client_id="alice", budget_s=BUDGET_S)
    assert len(seen.requests) == 4  # RetryPolicy.attempts


async def test_a_hanging_storage_costs_no_more_than_the_budget(seen: Seen) -> None:
    async with hanging_server() as hanging:
        http = await client_for(hanging.url, seen)
        storage = StorageClient(http, timeout_s=5, breaker=CircuitBreaker(2, 60))
        async with http:
            loop_time = asyncio.get_running_loop().time
            started = loop_time()
            with pytest.raises(StorageUnavailable):
                await storage.history("conv-1", client_id="alice", budget_s=0.3)
            assert loop_time() - started < 1.0
            with pytest.raises(StorageUnavailable):
                await storage.history("conv-1", client_id="alice", budget_s=0.3)
            # Two failures in a row: the circuit is open, storage is not called at all.
            connections = hanging.connections
            with pytest.raises(StorageCircuitOpen):
                await storage.history("conv-1", client_id="alice", budget_s=0.3)
            assert hanging.connections == connections


async def test_another_clients_conversation_is_neither_read_nor_written(
    storage: StorageClient,
) -> None:
    memory = ConversationMemory(storage, read_timeout_s=BUDGET_S, write_timeout_s=BUDGET_S)
    cid = f"conv-{uuid.uuid4().hex[:8]}"
    assert await memory.read(cid, "alice") == ([], "new")
    mine = [NewMessage("user", "alice's plans", f"{cid}-a")]
    assert await memory.remember(cid, "alice", mine, wait_s=BUDGET_S) == "stored"

    # To bob the conversation does not exist, and its ID is taken.
    assert await memory.read(cid, "bob") == ([], "rejected")
    theirs = [NewMessage("user", "bob was here", f"{cid}-b")]
    assert await memory.remember(cid, "bob", theirs, wait_s=BUDGET_S) == "rejected"

    history, outcome = await memory.read(cid, "alice")
    assert outcome == "loaded" and [m.content for m in history] == ["alice's plans"]
