"""storage-adapter: conversations and messages behind one HTTP API (DESIGN §5).

Writes go to the durable store first, then to the cache; reads try the cache, then the
durable store (and refill the cache). The durable store is one of three backends behind
:class:`storage_adapter.store.DurableStore`; the cache is Redis or a bounded in-process
map behind :class:`storage_adapter.cache.ConversationCache`.

Where things live:

- :mod:`storage_adapter.api` — the HTTP routes and the error document
- :mod:`storage_adapter.schemas` — request/response bodies and input limits
- :mod:`storage_adapter.checks` — what no store can hold (refused, 422) and tracing keys
  (dropped from metadata)
- :mod:`storage_adapter.service` — durable-then-cache orchestration
- :mod:`storage_adapter.store` — the durable-store protocol and backends
  (:mod:`~storage_adapter.store.sql` for Postgres and SQLite,
  :mod:`~storage_adapter.store.supabase` for Supabase REST)
- :mod:`storage_adapter.cache` — the cache protocol, Redis and memory caches, and the
  guard that keeps a cache outage away from clients
- :mod:`storage_adapter.telemetry` — metrics and instrumentation wiring

Exceptions::

    StorageAdapterError
     ├── StoreUnavailable        the durable store cannot be used → 503 STORAGE_UNAVAILABLE
     │    └── SchemaError        its tables are missing or newer than this adapter
     ├── CacheUnavailable        the cache failed (never reaches a client)
     ├── ConversationNotFound    → 404 NOT_FOUND (also: another client's conversation)
     ├── ContinuationIdTaken     create under another client's ID → 409
     ├── IdempotencyConflict     same idempotency_key, different message → 409
     ├── InvalidData             the store refused the data itself → 422 VALIDATION_ERROR
     └── LimitExceeded           input over a configured size → 422 VALIDATION_ERROR
"""

__version__ = "0.1.0"
