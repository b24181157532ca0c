"""Redis cache shared by every adapter replica.

Per conversation: a hash ``…:conv:<id>`` (conversation JSON, ``updated_at``,
``complete``, message ``count``, ``epoch``), a sorted set ``…:msgs:<id>`` (message JSON
scored by message id) and a generation counter ``…:gen:<id>``. Fills and appends are
Lua scripts, so each is atomic. A global ``…:epoch`` counter invalidates every entry at
once: it is bumped after Redis missed a write (it was unreachable), so that entries
written before the outage are never served again.

Spans: the redis instrumentation records commands as ``EVALSHA ? ? …`` — argument
values (message content) are never recorded.
"""

from __future__ import annotations

import json

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

_FILL = """
if (redis.call('GET', KEYS[3]) or '0') ~= ARGV[1] then return 0 end
if (redis.call('GET', KEYS[4]) or '0') ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
local count = (#ARGV - 6) / 2
redis.call('HSET', KEYS[1], 'conv', ARGV[3], 'updated_at', ARGV[4], 'complete', ARGV[5],
           'epoch', ARGV[2], 'count', count)
redis.call('EXPIRE', KEYS[1], ARGV[6])
for i = 7, #ARGV, 2 do redis.call('ZADD', KEYS[2], ARGV[i], ARGV[i + 1]) end
if count > 0 then redis.call('EXPIRE', KEYS[2], ARGV[6]) end
return 1
"""

_APPEND = """
redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], ARGV[6])
local h = redis.call('HMGET', KEYS[1], 'epoch', 'count', 'updated_at')
if not h[1] then
  redis.call('DEL', KEYS[2])
  return 0
end
if h[1] ~= (redis.call('GET', KEYS[4]) or '0')
   or tonumber(h[2]) ~= redis.call('ZCARD', KEYS[2]) then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 0
end
if #redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], ARGV[1]) == 0 then
  redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
end
local n = redis.call('ZCARD', KEYS[2])
local max = tonumber(ARGV[4])
if n > max then
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, n - max - 1)
  redis.call('HSET', KEYS[1], 'complete', '0')
  n = max
end
redis.call('HSET', KEYS[1], 'count', n)
if not h[3] or ARGV[3] > h[3] then redis.call('HSET', KEYS[1], 'updated_at', ARGV[3]) end
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 1
"""


def keys(continuation_id: str) -> list[str]:
    """The conversation's hash, sorted set and generation keys, then the epoch key."""
    return [
        f"{KEY_PREFIX}conv:{continuation_id}",
        f"{KEY_PREFIX}msgs:{continuation_id}",
        f"{KEY_PREFIX}gen:{continuation_id}",
        EPOCH_KEY,
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

    def __init__(self, client: aioredis.Redis, *, ttl_s: int, max_turns: int) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._generation_ttl_s = max(ttl_s, _MIN_GENERATION_TTL_S)
        self._max_turns = max_turns
        self._fill = client.register_script(_FILL)
        self._append = client.register_script(_APPEND)

    async def lookup(self, continuation_id: str) -> CacheLookup:
        conv_key, msgs_key, gen_key, epoch_key = keys(continuation_id)
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hgetall(conv_key)
                pipe.zrange(msgs_key, 0, -1)
                pipe.get(gen_key)
                pipe.get(epoch_key)
                fields, members, generation, epoch = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"redis lookup failed: {type(exc).__name__}") from exc
        token = (generation or "0", epoch or "0")
        try:
            history = decode_entry(fields, members, epoch or "0")
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
        ]
        for message in capped.messages:
            args += [message.id, message.to_json_text()]
        try:
            result = await self._fill(keys=keys(continuation_id), args=args)
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"redis fill failed: {type(exc).__name__}") from exc
        return bool(result)

    async def append(
        self, continuation_id: str, conversation: Conversation, message: Message
    ) -> None:
        args: list[str | int] = [
            message.id,
            message.to_json_text(),
            iso_utc(conversation.updated_at),
            self._max_turns,
            self._ttl_s,
            self._generation_ttl_s,
        ]
        try:
            await self._append(keys=keys(continuation_id), args=args)
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"redis append failed: {type(exc).__name__}") from exc

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
