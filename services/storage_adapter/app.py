"""The app factory: clients are built in the lifespan and closed on shutdown."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import httpx
from fastapi import FastAPI
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

from exai_telemetry.health import Probe
from exai_telemetry.http_service import (
    NATIVE_TELEMETRY_OFF,
    BodyLimit,
    add_health_routes,
    instrument_app,
)
from exai_telemetry.internal_auth import install_internal_auth
from exai_telemetry.redaction import redact_url
from exai_telemetry.setup import Telemetry
from storage_adapter import __version__
from storage_adapter.api import install_error_handlers, router, too_large
from storage_adapter.cache import ConversationCache
from storage_adapter.cache import redis as redis_cache
from storage_adapter.cache.guard import CacheGuard
from storage_adapter.cache.memory import MemoryCache
from storage_adapter.schemas import Limits
from storage_adapter.service import WRITE_LEASE_DB_TIMEOUTS, ConversationService
from storage_adapter.settings import StorageSettings
from storage_adapter.store import DurableStore
from storage_adapter.store.sql import SqlStore, create_engine, describe_location
from storage_adapter.store.supabase import NoPropagationTransport, SupabaseStore, name_rest_span
from storage_adapter.telemetry import (
    Dependencies,
    StorageMetrics,
    instrument_engine,
    instrument_redis,
)

logger = logging.getLogger(__name__)

SERVICE_NAME = "storage-adapter"


@dataclass
class _Undo:
    steps: list[Callable[[], None]] = field(default_factory=list)

    def run(self) -> None:
        while self.steps:
            self.steps.pop()()


def supabase_http_client(settings: StorageSettings, telemetry: Telemetry) -> httpx.AsyncClient:
    """Traced on our side, as database calls (db.system.name `supabase`); no trace
    context or baggage sent to Supabase."""
    http = httpx.AsyncClient(timeout=settings.db_timeout_s, transport=NoPropagationTransport())
    HTTPXClientInstrumentor.instrument_client(
        http,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        request_hook=name_rest_span,
    )
    return http


async def build_store(
    settings: StorageSettings, telemetry: Telemetry, undo: _Undo, metrics: StorageMetrics
) -> DurableStore:
    backend = settings.store_backend
    supabase_url, supabase_key = settings.supabase_url, settings.supabase_key
    if backend == "supabase" and supabase_url is not None and supabase_key is not None:
        http = supabase_http_client(settings, telemetry)
        logger.info("durable store: Supabase REST at %s", redact_url(supabase_url))
        return await SupabaseStore.connect(
            supabase_url,
            supabase_key.get_secret_value(),
            timeout_s=settings.db_timeout_s,
            http=http,
        )
    url = settings.sqlalchemy_url()
    engine = create_engine(url, timeout_s=settings.db_timeout_s, pool_size=settings.db_pool_size)
    undo.steps.append(instrument_engine(engine, telemetry))
    logger.info("durable store: %s at %s", backend, describe_location(url))
    return SqlStore(
        engine,
        timeout_s=settings.db_timeout_s,
        tracer=telemetry.tracer("storage_adapter"),
        on_commit=metrics.append_committed,
    )


def build_cache(settings: StorageSettings, telemetry: Telemetry) -> ConversationCache:
    # A write lease outlasts any durable write (storage_adapter.cache).
    write_lease_s = WRITE_LEASE_DB_TIMEOUTS * settings.db_timeout_s
    if settings.redis_url is None:
        logger.info("cache: in-process memory (REDIS_URL unset)")
        return MemoryCache(
            ttl_s=settings.cache_ttl_s,
            max_turns=settings.cache_max_turns,
            max_conversations=settings.memory_cache_max_conversations,
            max_chars=settings.memory_cache_max_chars,
            write_lease_s=write_lease_s,
        )
    url = settings.redis_url.get_secret_value()
    client = redis_cache.connect(url, timeout_s=settings.redis_timeout_s)
    instrument_redis(client, telemetry)
    logger.info("cache: Redis at %s", redact_url(url))
    return redis_cache.RedisCache(
        client,
        ttl_s=settings.cache_ttl_s,
        max_turns=settings.cache_max_turns,
        write_lease_s=write_lease_s,
    )


def create_app(settings: StorageSettings, telemetry: Telemetry) -> FastAPI:
    dependencies = Dependencies()
    metrics = StorageMetrics(telemetry.meter("storage_adapter"), dependencies)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        undo = _Undo()
        store = await build_store(settings, telemetry, undo, metrics)
        cache = build_cache(settings, telemetry)
        metrics.configured(cache=cache.backend, durable=store.backend)
        guard = CacheGuard(cache, metrics, dependencies, retry_s=settings.cache_retry_s)
        service = ConversationService(
            store, guard, metrics, dependencies, cache_max_turns=settings.cache_max_turns
        )
        app.state.service = service
        await service.start()
        try:
            yield
        finally:
            await service.close()
            undo.run()

    app = FastAPI(
        title="EXAI storage-adapter",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        telemetry=NATIVE_TELEMETRY_OFF,
    )
    app.state.limits = Limits(
        max_content_chars=settings.max_content_chars,
        max_metadata_bytes=settings.max_metadata_bytes,
        history_default=settings.history_default_limit,
        history_max=settings.history_max_limit,
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, reject=too_large)
    instrument_app(app, telemetry)
    install_error_handlers(app)
    app.include_router(router)

    def probes() -> Sequence[Probe]:
        service: ConversationService | None = getattr(app.state, "service", None)
        if service is None:
            return []
        return [
            Probe(service.store.backend, service.durable_health, required=True),
            Probe(service.cache.backend, service.cache_health, required=False),
        ]

    add_health_routes(app, probes, __version__)
    install_internal_auth(app, settings.storage_token, "EXAI_STORAGE_TOKEN")
    return app
