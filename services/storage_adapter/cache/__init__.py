"""The conversation cache: one protocol, a Redis and an in-process implementation.

An entry holds a conversation and up to ``EXAI_CACHE_MAX_TURNS`` of its newest messages
(oldest first), and whether those are all of them. Three rules keep it consistent with
the durable store without locks, whatever happens between a commit and the cache
update that should follow it:

- a write takes a *write lease* (:meth:`ConversationCache.begin_write`, deadline
  ``write_lease_s`` ahead, longer than any durable write can take), writes the durable
  store, then ends the lease: :meth:`~ConversationCache.append` merges the stored
  message into an existing entry (ordered by message id, so concurrent appends land in
  history order); :meth:`~ConversationCache.release` ends a write that stored nothing
  new, dropping the entry when it was a replay (an earlier attempt's update may have
  been lost); :meth:`~ConversationCache.abandon` drops the entry when the outcome is
  unknown (commit in doubt, cancelled) and keeps the lease until it runs out. Each
  bumps the conversation's *generation*;
- a reader that missed fills the entry only if the generation it saw before reading
  the durable store is still current (:meth:`ConversationCache.fill` with the lookup's
  token), so a slow reader can never overwrite a newer write with an older snapshot;
- a lease that runs out was never ended: its writer died (or its commit landed late).
  Whoever notices first — a lookup, fill or write of that conversation — drops the
  entry and bumps the generation, so the next read refills from the durable store,
  which by then holds the message.

The service runs a write and its cache update as one task that a cancelled request
does not cancel. :class:`~storage_adapter.cache.guard.CacheGuard` wraps a cache so that
its failures never reach a client.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from storage_adapter.models import Conversation, History, Message


@dataclass(frozen=True)
class CacheLookup:
    history: History | None
    token: object
    """Opaque: hand it back to :meth:`ConversationCache.fill` after reading the store."""


class ConversationCache(Protocol):
    backend: str
    """`redis` or `memory`: the health component's name."""

    async def lookup(self, continuation_id: str) -> CacheLookup: ...

    async def fill(self, continuation_id: str, history: History, token: object) -> bool:
        """Store ``history`` unless the conversation was written since ``token``."""

    async def begin_write(self, continuation_id: str) -> object:
        """Take a write lease before writing the durable store; returns it (opaque)."""

    async def append(
        self, continuation_id: str, conversation: Conversation, message: Message, lease: object
    ) -> None:
        """End ``lease``: merge a durably stored message into the entry, if there is
        one that can be trusted (else drop it)."""

    async def release(self, continuation_id: str, lease: object, *, drop: bool) -> None:
        """End ``lease`` of a write that stored nothing new; ``drop`` the entry too."""

    async def abandon(self, continuation_id: str, lease: object) -> None:
        """The write's outcome is unknown: drop the entry now, keep the lease until it
        runs out (so that an entry filled meanwhile is dropped again then)."""

    async def invalidate_all(self) -> None:
        """Forget every entry (after a write the cache could not see)."""

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def cap_history(history: History, max_turns: int) -> History:
    """``history`` with at most ``max_turns`` newest messages; incomplete if it lost any."""
    if len(history.messages) <= max_turns:
        return history
    return History(history.conversation, history.messages[-max_turns:], complete=False)


def merge_message(
    messages: tuple[Message, ...], message: Message, max_turns: int
) -> tuple[tuple[Message, ...], bool]:
    """Messages with ``message`` inserted by id (once), capped; and whether any were cut."""
    if any(m.id == message.id for m in messages):
        merged = messages
    else:
        merged = tuple(sorted((*messages, message), key=lambda m: m.id))
    if len(merged) <= max_turns:
        return merged, False
    return merged[-max_turns:], True


def later_conversation(cached: Conversation, fresh: Conversation) -> Conversation:
    """The cached conversation with the newer of the two ``updated_at`` values."""
    if fresh.updated_at <= cached.updated_at:
        return cached
    return replace(cached, updated_at=fresh.updated_at)
