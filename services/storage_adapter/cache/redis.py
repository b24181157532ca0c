"""Redis cache shared by every adapter replica.

Per conversation: a hash ``…:conv:<id>`` (conversation JSON, ``updated_at``,
``complete``, message ``count``, ``epoch``), a sorted set ``…:msgs:<id>`` (message JSON
scored by message id), a generation counter ``…:gen:<id>`` and a sorted set of write
leases ``…:leases:<id>`` (lease id scored by its deadline in Redis ``TIME``
milliseconds, so replicas need no synchronized clocks). Every operation is one Lua
script, so each is atomic, and each first drops the entry if a lease ran out (see
:mod:`storage_adapter.cache`). The leases set lives at least as long as the entry
(``ttl + lease``), so an unended lease is always noticed. A global ``…:epoch`` counter
invalidates every entry at once: it is bumped after Redis missed a write (it was
unreachable), so that entries written before the outage are never served again.

Spans: the redis instrumentation records commands as ``EVAL ? ? …`` — argument
values (message content) are never recorded. The scripts go out with EVAL, not
EVALSHA: redis-py's EVALSHA fails with NOSCRIPT on the first use of each script after
Redis (re)starts and then reloads it, and the instrumentation records that first
attempt as a failed Redis command — an error span on every restart that no dashboard or
tail-sampling policy could tell from a real failure. Redis caches the compiled script by
its hash either way; the cost is the script text (1-2 KB) on each call.
"""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

import redis.asyncio as aioredis
from opentelemetry.instrumentation.utils import suppress_instrumentation
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from storage_adapter.cache import CacheLookup, cap_history
from storage_adapter.errors import CacheUnavailable
from storage_adapter.models import Conversation, History, Message, iso_utc

KEY_PREFIX = "exai:storage:v1:"
EPOCH_KEY = KEY_PREFIX + "epoch"
# A generation must outlive any fill in flight, whatever the entry TTL.
_MIN_GENERATION_TTL_S = 300
_MAX_CONNECTIONS = 64

# KEYS: 1 entry hash, 2 messages, 3 generation, 4 epoch, 5 leases. ARGV[1] is always
# the generation's TTL.
_COMMON = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function bump()
  redis.call('INCR', KEYS[3])
  redis.call('EXPIRE', KEYS[3], ARGV[1])
end
local function drop()
  redis.call('DEL', KEYS[1], KEYS[2])
end
-- A lease that ran out was never ended: its writer died, or its commit landed late.
-- The entry may lack that message: drop it, and refuse fills that read before now.
local function expire_leases()
  local now = now_ms()
  if redis.call('ZCOUNT', KEYS[5], '-inf', now) == 0 then return false end
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
  drop()
  bump()
  return true
end
local function keep_leases(seconds)
  if redis.call('EXISTS', KEYS[5]) == 1 then redis.call('EXPIRE', KEYS[5], seconds) end
end
"""

_LOOKUP = (
    _COMMON
    + """
expire_leases()
return {redis.call('HGETALL', KEYS[1]), redis.call('ZRANGE', KEYS[2], 0, -1),
        redis.call('GET', KEYS[3]) or '0', redis.call('GET', KEYS[4]) or '0'}
"""
)

# ARGV: 2 generation, 3 epoch, 4 conversation, 5 updated_at, 6 complete, 7 ttl,
# 8 leases ttl, then (message id, message JSON) pairs.
_FILL = (
    _COMMON
    + """
if expire_leases() then return 0 end
if (redis.call('GET', KEYS[3]) or '0') ~= ARGV[2] then return 0 end
if (redis.call('GET', KEYS[4]) or '0') ~= ARGV[3] then return 0 end
drop()
local count = (#ARGV - 8) / 2
redis.call('HSET', KEYS[1], 'conv', ARGV[4], 'updated_at', ARGV[5], 'complete', ARGV[6],
           'epoch', ARGV[3], 'count', count)
redis.call('EXPIRE', KEYS[1], ARGV[7])
for i = 9, #ARGV, 2 do redis.call('ZADD', KEYS[2], ARGV[i], ARGV[i + 1]) end
if count > 0 then redis.call('EXPIRE', KEYS[2], ARGV[7]) end
keep_leases(ARGV[8])
return 1
"""
)

# ARGV: 2 lease id, 3 lease ms, 4 leases ttl.
_BEGIN = (
    _COMMON
    + """
expire_leases()
redis.call('ZADD', KEYS[5], now_ms() + tonumber(ARGV[3]), ARGV[2])
redis.call('EXPIRE', KEYS[5], ARGV[4])
return 1
"""
)

# ARGV: 2 lease id, 3 drop ('1'/'0'), 4 message id ('' if none), 5 message JSON,
# 6 updated_at, 7 max turns, 8 ttl, 9 leases ttl.
_END = (
    _COMMON
    + """
bump()
local held = redis.call('ZREM', KEYS[5], ARGV[2])
local expired = expire_leases()
if expired or held == 0 or ARGV[3] == '1' then
  drop()
  return 0
end
if ARGV[4] == '' then return 0 end
local h = redis.call('HMGET', KEYS[1], 'epoch', 'count', 'updated_at')
if not h[1] then
  redis.call('DEL', KEYS[2])
  return 0
end
if h[1] ~= (redis.call('GET', KEYS[4]) or '0')
   or tonumber(h[2]) ~= redis.call('ZCARD', KEYS[2]) then
  drop()
  return 0
end
if #redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[4], ARGV[4]) == 0 then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
end
local n = redis.call('ZCARD', KEYS[2])
local max = tonumber(ARGV[7])
if n > max then
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, n - max - 1)
  redis.call('HSET', KEYS[1], 'complete', '0')
  n = max
end
redis.call('HSET', KEYS[1], 'count', n)
if not h[3] or ARGV[6] > h[3] then redis.call('HSET', KEYS[1], 'updated_at', ARGV[6]) end
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('EXPIRE', KEYS[2], ARGV[8])
keep_leases(ARGV[9])
return 1
"""
)

# The lease stays: it runs out later and drops whatever was filled meanwhile.
_ABANDON = (
    _COMMON
    + """
drop()
bump()
return 1
"""
)


def keys(continuation_id: str) -> list[str]:
    """The conversation's hash, sorted set and generation keys, the epoch key, then
    the conversation's write leases."""
    return [
        f"{KEY_PREFIX}conv:{continuation_id}",
        f"{KEY_PREFIX}msgs:{continuation_id}",
        f"{KEY_PREFIX}gen:{continuation_id}",
        EPOCH_KEY,
        f"{KEY_PREFIX}leases:{continuation_id}",
    ]


def connect(url: str, *, timeout_s: float) -> aioredis.Redis:
    """A client that fails fast: small timeouts, one immediate retry (a pooled
    connection broken by a Redis restart is replaced once), bounded pool."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=_MAX_CONNECTIONS,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1),
        decode_responses=True,
    )
    return aioredis.Redis.from_pool(pool)


def decode_entry(fields: dict[str, str], members: list[str], epoch: str) -> History | None:
    """The cached history, or None when absent, from an old epoch or inconsistent."""
    if not fields or fields.get("epoch") != epoch:
        return None
    if int(fields.get("count", "-1")) != len(members):
        return None
    data = json.loads(fields["conv"])
    data["updated_at"] = fields["updated_at"]
    conversation = Conversation.from_json(data)
    messages = tuple(Message.from_json(json.loads(m)) for m in members)
    return History(conversation, messages, fields.get("complete") == "1")


class RedisCache:
    backend = "redis"

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        ttl_s: int,
        max_turns: int,
        write_lease_s: float = 60.0,
    ) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._generation_ttl_s = max(ttl_s, _MIN_GENERATION_TTL_S)
        self._max_turns = max_turns
        self._lease_ms = max(1, math.ceil(write_lease_s * 1000))
        self._leases_ttl_s = ttl_s + math.ceil(write_lease_s) + 1

    async def _run(
        self, name: str, script: str, continuation_id: str, args: list[str | int]
    ) -> Any:
        entry = keys(continuation_id)
        try:
            return await self._client.eval(
                script, len(entry), *entry, self._generation_ttl_s, *args
            )
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"redis {name} failed: {type(exc).__name__}") from exc

    async def lookup(self, continuation_id: str) -> CacheLookup:
        reply = await self._run("lookup", _LOOKUP, continuation_id, [])
        flat, members, generation, epoch = reply
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        token = (generation, epoch)
        try:
            history = decode_entry(fields, members, epoch)
        except (ValueError, KeyError, TypeError):
            history = None  # a corrupt or foreign entry is a miss; the fill replaces it
        return CacheLookup(history, token)

    async def fill(self, continuation_id: str, history: History, token: object) -> bool:
        if not isinstance(token, tuple):
            return False
        generation, epoch = token
        capped = cap_history(history, self._max_turns)
        conversation = capped.conversation.to_json()
        args: list[str | int] = [
            generation,
            epoch,
            json.dumps(conversation, sort_keys=True, separators=(",", ":")),
            conversation["updated_at"],
            "1" if capped.complete else "0",
            self._ttl_s,
            self._leases_ttl_s,
        ]
        for message in capped.messages:
            args += [message.id, message.to_json_text()]
        return bool(await self._run("fill", _FILL, continuation_id, args))

    async def begin_write(self, continuation_id: str) -> object:
        lease = uuid.uuid4().hex
        args: list[str | int] = [lease, self._lease_ms, self._leases_ttl_s]
        await self._run("begin_write", _BEGIN, continuation_id, args)
        return lease

    async def append(
        self, continuation_id: str, conversation: Conversation, message: Message, lease: object
    ) -> None:
        written: list[str | int] = [
            message.id,
            message.to_json_text(),
            iso_utc(conversation.updated_at),
        ]
        await self._end_write(continuation_id, lease, drop=False, written=written)

    async def release(self, continuation_id: str, lease: object, *, drop: bool) -> None:
        await self._end_write(continuation_id, lease, drop=drop, written=["", "", ""])

    async def _end_write(
        self, continuation_id: str, lease: object, *, drop: bool, written: list[str | int]
    ) -> None:
        args: list[str | int] = [
            lease if isinstance(lease, str) else "",  # no lease (its begin failed): drop
            "1" if drop else "0",
            *written,
            self._max_turns,
            self._ttl_s,
            self._leases_ttl_s,
        ]
        await self._run("end_write", _END, continuation_id, args)

    async def abandon(self, continuation_id: str, lease: object) -> None:
        await self._run("abandon", _ABANDON, continuation_id, [])

    async def invalidate_all(self) -> None:
        try:
            await self._client.incr(EPOCH_KEY)
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"redis invalidate failed: {type(exc).__name__}") from exc

    async def ping(self) -> None:
        try:
            with suppress_instrumentation():
                await self._client.ping()
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"redis ping failed: {type(exc).__name__}") from exc

    async def close(self) -> None:
        await self._client.aclose()
