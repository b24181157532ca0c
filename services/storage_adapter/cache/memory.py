"""In-process cache for a single adapter (used when ``REDIS_URL`` is unset).

Bounded three ways: entries expire after ``ttl_s``; at most ``max_conversations``
entries and ``max_chars`` characters of content are kept, least recently used evicted
first. Generations come from one process-wide counter, so a forgotten generation can
never come back with a value a reader already saw. Write leases (see
:mod:`storage_adapter.cache`) matter here for commits in doubt: a crash takes this
cache with it.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from storage_adapter.cache import (
    CacheLookup,
    cap_history,
    later_conversation,
    merge_message,
)
from storage_adapter.models import Conversation, History, Message

# Per-message overhead (ids, role, timestamps) in the size estimate.
_MESSAGE_OVERHEAD_CHARS = 256


@dataclass
class _Entry:
    history: History
    expires_at: float
    size: int


def _size(history: History) -> int:
    return sum(len(m.content) + _MESSAGE_OVERHEAD_CHARS for m in history.messages) + 512


class MemoryCache:
    backend = "memory"

    def __init__(
        self,
        *,
        ttl_s: float,
        max_turns: int,
        max_conversations: int,
        max_chars: int,
        write_lease_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._write_lease_s = write_lease_s
        self._max_turns = max_turns
        self._max_conversations = max_conversations
        self._max_chars = max_chars
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._chars = 0
        self._generations: OrderedDict[str, int] = OrderedDict()
        self._generation_counter = itertools.count(1)
        self._generation_floor = 0
        self._max_generations = max_conversations * 4
        self._leases: dict[str, dict[int, float]] = {}
        self._lease_ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def chars(self) -> int:
        return self._chars

    def _generation(self, continuation_id: str) -> int:
        return self._generations.get(continuation_id, self._generation_floor)

    def _bump(self, continuation_id: str) -> None:
        self._generations[continuation_id] = next(self._generation_counter)
        self._generations.move_to_end(continuation_id)
        while len(self._generations) > self._max_generations:
            _, forgotten = self._generations.popitem(last=False)
            self._generation_floor = max(self._generation_floor, forgotten)

    def _live(self, continuation_id: str) -> _Entry | None:
        entry = self._entries.get(continuation_id)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            self._remove(continuation_id)
            return None
        return entry

    def _remove(self, continuation_id: str) -> None:
        entry = self._entries.pop(continuation_id, None)
        if entry is not None:
            self._chars -= entry.size

    def _store(self, continuation_id: str, history: History) -> None:
        self._remove(continuation_id)
        size = _size(history)
        if size > self._max_chars:
            return
        self._entries[continuation_id] = _Entry(history, self._clock() + self._ttl_s, size)
        self._chars += size
        while len(self._entries) > self._max_conversations or self._chars > self._max_chars:
            oldest = next(iter(self._entries))
            self._remove(oldest)

    def _expire_leases(self, continuation_id: str) -> None:
        """A lease that ran out was never ended: the entry may lack its message."""
        leases = self._leases.get(continuation_id)
        if not leases:
            return
        now = self._clock()
        expired = [lease for lease, deadline in leases.items() if deadline <= now]
        if not expired:
            return
        for lease in expired:
            del leases[lease]
        if not leases:
            del self._leases[continuation_id]
        self._remove(continuation_id)
        self._bump(continuation_id)

    def _end_lease(self, continuation_id: str, lease: object) -> bool:
        """Remove ``lease``; whether it was still held."""
        leases = self._leases.get(continuation_id, {})
        held = isinstance(lease, int) and leases.pop(lease, None) is not None
        if not leases:
            self._leases.pop(continuation_id, None)
        return held

    async def lookup(self, continuation_id: str) -> CacheLookup:
        self._expire_leases(continuation_id)
        token = self._generation(continuation_id)
        entry = self._live(continuation_id)
        if entry is None:
            return CacheLookup(None, token)
        self._entries.move_to_end(continuation_id)
        return CacheLookup(entry.history, token)

    async def fill(self, continuation_id: str, history: History, token: object) -> bool:
        self._expire_leases(continuation_id)
        if self._generation(continuation_id) != token:
            return False
        self._store(continuation_id, cap_history(history, self._max_turns))
        return True

    async def begin_write(self, continuation_id: str) -> object:
        self._expire_leases(continuation_id)
        if len(self._leases) >= self._max_generations:
            for other in list(self._leases):
                self._expire_leases(other)
        lease = next(self._lease_ids)
        deadline = self._clock() + self._write_lease_s
        self._leases.setdefault(continuation_id, {})[lease] = deadline
        return lease

    async def release(self, continuation_id: str, lease: object, *, drop: bool) -> None:
        self._bump(continuation_id)
        held = self._end_lease(continuation_id, lease)
        self._expire_leases(continuation_id)
        if drop or not held:
            self._remove(continuation_id)

    async def abandon(self, continuation_id: str, lease: object) -> None:
        self._bump(continuation_id)
        self._remove(continuation_id)

    async def append(
        self, continuation_id: str, conversation: Conversation, message: Message, lease: object
    ) -> None:
        self._bump(continuation_id)
        held = self._end_lease(continuation_id, lease)
        self._expire_leases(continuation_id)
        if not held:
            # The lease ran out and was cleared: an entry filled since may lack this
            # message, and possibly others; the durable store has them.
            self._remove(continuation_id)
            return
        entry = self._live(continuation_id)
        if entry is None:
            return
        cached = entry.history
        merged, cut = merge_message(cached.messages, message, self._max_turns)
        updated = History(
            later_conversation(cached.conversation, conversation),
            merged,
            cached.complete and not cut,
        )
        self._store(continuation_id, updated)

    async def invalidate_all(self) -> None:
        self._entries.clear()
        self._chars = 0

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        await self.invalidate_all()
