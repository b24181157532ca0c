"""Conversation memory for ``chat``: what history to send, and storage that never
holds an answer back.

History is trimmed newest-first (:func:`fit_history`) so that history + prompt stay
within the model's character budget and the request body within provider-proxy's
limit: a long conversation loses its oldest turns instead of failing every call.

:class:`ConversationMemory` bounds every storage operation. The read has a short budget
(past it, the call goes on without history). The exchange is written by a task of its
own: the answer waits for it only briefly, then the write goes on after the answer
(retried with the same idempotency keys, so still stored exactly once). Writes of one
conversation run in order, and a read waits for the conversation's pending write, so
the next call on it sees the exchange. Shutdown lets pending writes finish
(:meth:`ConversationMemory.drain`).

Outcomes for the result's metadata — read: ``new`` | ``loaded`` | ``unavailable`` |
``rejected``; write: ``stored`` | ``pending`` (still being written after the answer)
| ``failed`` | ``rejected`` (storage refused the request, e.g. not this client's
conversation).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

from ws_gateway.clients import StorageCircuitOpen, StorageClient, StorageRejected, StoredMessage
from ws_gateway.errors import CallError
from ws_gateway.settings import GatewaySettings
from ws_gateway.types import JSONObject

logger = logging.getLogger(__name__)

# What a chat request's body holds besides the messages (model, options, JSON syntax).
BODY_ENVELOPE_BYTES = 8 * 1024
# Writes still running after their answers; past this, new exchanges are not stored.
MAX_PENDING_WRITES = 1024
# asyncio's own bound around an operation whose attempts are already bounded.
SAFETY_MARGIN_S = 0.5

ReadOutcome = Literal["new", "loaded", "unavailable", "rejected"]
WriteOutcome = Literal["stored", "pending", "failed", "rejected"]


# --- the history budget -----------------------------------------------------------------


@dataclass(frozen=True)
class HistoryBudget:
    chars: int  # history + prompt, in characters
    body_bytes: int  # history + prompt messages, JSON-encoded as sent

    @classmethod
    def for_model(cls, settings: GatewaySettings, model: str) -> HistoryBudget:
        prefixes = [p for p in settings.history_budget_chars_by_model if model.startswith(p)]
        chars = (
            settings.history_budget_chars_by_model[max(prefixes, key=len)]
            if prefixes
            else settings.history_budget_chars
        )
        return cls(chars, settings.provider_max_request_bytes - BODY_ENVELOPE_BYTES)


def _encoded_size(message: JSONObject) -> int:
    # As httpx sends JSON (compact, not ASCII-escaped); a lone surrogate is counted,
    # not fatal (the provider client decides what to do with it).
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
    return len(text.encode("utf-8", "surrogatepass"))


def _chars(message: JSONObject) -> int:
    content = message.get("content")
    return len(content) if isinstance(content, str) else 0


def fit_history(
    history: Sequence[JSONObject], prompt: JSONObject, budget: HistoryBudget
) -> tuple[list[JSONObject], int]:
    """The newest messages of `history` that fit in `budget` beside `prompt` (always
    sent), and how many were dropped. What is kept is a contiguous, newest part of the
    conversation that does not open with an answer to a dropped question."""
    chars = _chars(prompt)
    size = _encoded_size(prompt)
    start = len(history)
    for index in range(len(history) - 1, -1, -1):
        message = history[index]
        chars += _chars(message)
        size += _encoded_size(message) + 1  # and a comma
        if chars > budget.chars or size > budget.body_bytes:
            break
        start = index
    while start < len(history) and history[start].get("role") == "assistant":
        start += 1
    return list(history[start:]), start


# --- reads and writes that never hold an answer -------------------------------------------


@dataclass(frozen=True)
class NewMessage:
    role: str
    content: str
    idempotency_key: str
    metadata: JSONObject = field(default_factory=dict)


class ConversationMemory:
    def __init__(
        self,
        storage: StorageClient,
        *,
        read_timeout_s: float,
        write_timeout_s: float,
        max_pending: int = MAX_PENDING_WRITES,
    ) -> None:
        self._storage = storage
        self._read_timeout_s = read_timeout_s
        self._write_timeout_s = write_timeout_s
        self._max_pending = max_pending
        self._writes: set[asyncio.Task[WriteOutcome]] = set()
        # The latest write of each conversation: the next write and read wait for it.
        self._latest: dict[str, asyncio.Task[WriteOutcome]] = {}

    def status(self) -> JSONObject:
        return {
            "storage_circuit": self._storage.breaker.state,
            "pending_writes": len(self._writes),
        }

    async def read(
        self, continuation_id: str, client_id: str, budget_s: float | None = None
    ) -> tuple[list[StoredMessage], ReadOutcome]:
        """The conversation's history (created if new), within the read budget."""
        loop = asyncio.get_running_loop()
        budget = self._read_timeout_s if budget_s is None else budget_s
        deadline = loop.time() + budget
        try:
            async with asyncio.timeout_at(deadline + SAFETY_MARGIN_S):
                previous = self._latest.get(continuation_id)
                if previous is not None:
                    await asyncio.wait({previous}, timeout=budget)
                stored = await self._storage.history(
                    continuation_id, client_id=client_id, budget_s=deadline - loop.time()
                )
                if stored is None:
                    await self._storage.create(
                        continuation_id, client_id=client_id, budget_s=deadline - loop.time()
                    )
                    return [], "new"
        except StorageRejected as exc:
            logger.warning("conversation history refused, answering without it: %s", exc)
            return [], "rejected"
        except (CallError, TimeoutError) as exc:
            reason = exc if isinstance(exc, CallError) else f"no answer within {budget:g}s"
            logger.log(
                _level(exc), "conversation history unavailable, answering without it: %s", reason
            )
            return [], "unavailable"
        return stored, "loaded"

    async def remember(
        self,
        continuation_id: str,
        client_id: str,
        messages: Iterable[NewMessage],
        wait_s: float,
    ) -> WriteOutcome:
        """Store `messages` in order; wait at most `wait_s` for it, then let it go on."""
        if len(self._writes) >= self._max_pending:
            logger.warning("conversation not stored: %d writes already pending", len(self._writes))
            return "failed"
        previous = self._latest.get(continuation_id)
        task = asyncio.create_task(
            self._write(continuation_id, client_id, list(messages), previous),
            name=f"store conversation {continuation_id}",
        )
        self._writes.add(task)
        self._latest[continuation_id] = task
        task.add_done_callback(partial(self._forget, continuation_id))
        # asyncio.wait, not wait_for: a timeout (or this call being cancelled) must not
        # cancel the write.
        done, _ = await asyncio.wait({task}, timeout=max(wait_s, 0.0))
        return task.result() if done else "pending"

    async def drain(self, timeout_s: float) -> None:
        """Let pending writes finish (shutdown); cancel those still running after it."""
        if not self._writes:
            return
        logger.info("waiting up to %gs for %d conversation writes", timeout_s, len(self._writes))
        _, running = await asyncio.wait(set(self._writes), timeout=max(timeout_s, 0.0))
        for task in running:
            task.cancel()
        if running:
            logger.warning("%d conversation writes abandoned at shutdown", len(running))
            await asyncio.gather(*running, return_exceptions=True)

    def _forget(self, continuation_id: str, task: asyncio.Task[WriteOutcome]) -> None:
        self._writes.discard(task)
        if self._latest.get(continuation_id) is task:
            del self._latest[continuation_id]

    async def _write(
        self,
        continuation_id: str,
        client_id: str,
        messages: list[NewMessage],
        previous: asyncio.Task[WriteOutcome] | None,
    ) -> WriteOutcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._write_timeout_s
        try:
            async with asyncio.timeout_at(deadline + SAFETY_MARGIN_S):
                if previous is not None:
                    await asyncio.wait({previous})  # keep the conversation in order
                for message in messages:
                    await self._append(continuation_id, client_id, message, deadline)
        except StorageRejected as exc:
            logger.warning("conversation not stored: %s", exc)
            return "rejected"
        except (CallError, TimeoutError) as exc:
            reason = exc if isinstance(exc, CallError) else "no time left"
            logger.log(_level(exc), "conversation not stored: %s", reason)
            return "failed"
        return "stored"

    async def _append(
        self, continuation_id: str, client_id: str, message: NewMessage, deadline: float
    ) -> None:
        loop = asyncio.get_running_loop()

        async def append() -> None:
            await self._storage.append(
                continuation_id,
                message.role,
                message.content,
                message.idempotency_key,
                message.metadata,
                client_id=client_id,
                budget_s=deadline - loop.time(),
            )

        try:
            await append()
        except StorageRejected as exc:
            if exc.status != 404:
                raise
            # The conversation does not exist: the read that creates it failed, or
            # found it gone. Creating it is idempotent.
            await self._storage.create(
                continuation_id, client_id=client_id, budget_s=deadline - loop.time()
            )
            await append()


def _level(exc: BaseException) -> int:
    # An open circuit was announced once when it opened; each call it skips is routine.
    return logging.INFO if isinstance(exc, StorageCircuitOpen) else logging.WARNING
