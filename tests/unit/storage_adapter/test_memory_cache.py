"""The in-process cache: TTL, LRU bounds, turn cap, generation-guarded fills and
write leases."""

from __future__ import annotations

from storage_adapter.cache.memory import MemoryCache
from storage_adapter.models import Conversation, Message
from tests.unit.storage_adapter.helpers import conversation, history, message


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache(clock: Clock | None = None, **overrides: int) -> MemoryCache:
    options = {
        "ttl_s": 10,
        "max_turns": 3,
        "max_conversations": 100,
        "max_chars": 1_000_000,
        "write_lease_s": 5,
    }
    options.update(overrides)
    return MemoryCache(clock=clock or Clock(), **options)


async def written(c: MemoryCache, continuation_id: str, conv: Conversation, msg: Message) -> None:
    """A whole successful write as the service makes it: lease, (commit), append."""
    lease = await c.begin_write(continuation_id)
    await c.append(continuation_id, conv, msg, lease)


async def filled(c: MemoryCache, continuation_id: str, *ids: int) -> None:
    lookup = await c.lookup(continuation_id)
    assert await c.fill(continuation_id, history(*ids), lookup.token)


async def test_fill_then_hit_capped_to_max_turns() -> None:
    c = cache()
    await filled(c, "a", 1, 2, 3, 4)
    cached = (await c.lookup("a")).history
    assert cached is not None
    assert [m.id for m in cached.messages] == [2, 3, 4]
    assert cached.complete is False


async def test_entries_expire_after_ttl() -> None:
    clock = Clock()
    c = cache(clock)
    await filled(c, "a", 1)
    clock.now += 9.9
    assert (await c.lookup("a")).history is not None
    clock.now += 0.2
    assert (await c.lookup("a")).history is None
    assert len(c) == 0


async def test_least_recently_used_is_evicted_first() -> None:
    c = cache(max_conversations=2)
    await filled(c, "a", 1)
    await filled(c, "b", 2)
    await c.lookup("a")  # a is now the most recently used
    await filled(c, "c", 3)
    assert (await c.lookup("a")).history is not None
    assert (await c.lookup("b")).history is None
    assert (await c.lookup("c")).history is not None


async def test_total_size_is_bounded() -> None:
    c = cache(max_chars=3000, max_turns=50)
    big = history(1, 2, 3)
    for name in ("a", "b", "c", "d"):
        token = (await c.lookup(name)).token
        await c.fill(name, big, token)
    assert c.chars <= 3000
    assert (await c.lookup("d")).history is not None
    assert (await c.lookup("a")).history is None
    huge = type(big)(big.conversation, (message(9, "x" * 5000),), True)
    assert await c.fill("e", huge, (await c.lookup("e")).token)
    assert (await c.lookup("e")).history is None  # larger than the whole cache: not kept


async def test_append_merges_in_id_order_and_refreshes_ttl() -> None:
    clock = Clock()
    c = cache(clock, max_turns=5)
    await filled(c, "a", 1, 3)
    clock.now += 8
    await written(c, "a", conversation(updated_s=30), message(2))
    clock.now += 8  # past the fill's TTL, within the append's
    cached = (await c.lookup("a")).history
    assert cached is not None
    assert [m.id for m in cached.messages] == [1, 2, 3]
    assert cached.complete is True
    assert cached.conversation.updated_at == conversation(updated_s=30).updated_at


async def test_append_past_the_cap_drops_the_oldest() -> None:
    c = cache(max_turns=3)
    await filled(c, "a", 1, 2, 3)
    await written(c, "a", conversation(), message(4))
    cached = (await c.lookup("a")).history
    assert cached is not None
    assert [m.id for m in cached.messages] == [2, 3, 4]
    assert cached.complete is False


async def test_a_fill_started_before_a_write_is_refused() -> None:
    c = cache()
    stale_token = (await c.lookup("a")).token
    await written(c, "a", conversation(), message(5))  # no entry: only the generation moves
    assert not await c.fill("a", history(1), stale_token)
    assert (await c.lookup("a")).history is None
    assert await c.fill("a", history(1, 5), (await c.lookup("a")).token)


async def test_forgotten_generations_never_let_a_stale_fill_through() -> None:
    c = cache(max_conversations=1)  # keeps 4 generations
    stale_token = (await c.lookup("a")).token
    await written(c, "a", conversation(), message(1))
    for other in ("b", "c", "d", "e", "f"):
        await written(c, other, conversation(), message(2))
    assert not await c.fill("a", history(), stale_token)


async def test_invalidate_all_forgets_everything() -> None:
    c = cache()
    await filled(c, "a", 1)
    await filled(c, "b", 2)
    await c.invalidate_all()
    assert len(c) == 0 and c.chars == 0


async def test_a_lease_that_runs_out_drops_the_entry() -> None:
    """The writer died between its commit and its cache update."""
    clock = Clock()
    c = cache(clock)
    await filled(c, "a", 1)
    await c.begin_write("a")  # ... and never ended
    during = await c.lookup("a")
    assert during.history is not None  # the write is not acknowledged yet
    clock.now += 4
    assert await c.fill("a", history(1), during.token)  # a reader's refill, without m2
    clock.now += 1.5
    after = await c.lookup("a")
    assert after.history is None  # the lease ran out: whatever was cached is dropped
    assert not await c.fill("a", history(1), during.token)
    assert await c.fill("a", history(1, 2), after.token)
    assert (await c.lookup("a")).history == history(1, 2)


async def test_an_abandoned_write_drops_the_entry_now_and_when_its_lease_ends() -> None:
    """The commit's outcome is unknown: it may land later (within the lease)."""
    clock = Clock()
    c = cache(clock)
    await filled(c, "a", 1)
    lease = await c.begin_write("a")
    await c.abandon("a", lease)
    assert (await c.lookup("a")).history is None
    await filled(c, "a", 1)  # read before the late commit
    clock.now += 5
    assert (await c.lookup("a")).history is None


async def test_release_keeps_or_drops_the_entry() -> None:
    c = cache()
    await filled(c, "a", 1)
    await c.release("a", await c.begin_write("a"), drop=False)  # refused: nothing written
    assert (await c.lookup("a")).history == history(1)
    await c.release("a", await c.begin_write("a"), drop=True)  # a replay
    assert (await c.lookup("a")).history is None


async def test_an_append_after_its_lease_ran_out_drops_the_entry() -> None:
    clock = Clock()
    c = cache(clock)
    await filled(c, "a", 1)
    lease = await c.begin_write("a")
    clock.now += 6
    await filled(c, "a", 1)  # the lease ran out (and was noticed); the commit is late
    await c.append("a", conversation(), message(2), lease)
    assert (await c.lookup("a")).history is None
    await c.append("a", conversation(), message(3), None)  # no lease at all: same
    assert (await c.lookup("a")).history is None
