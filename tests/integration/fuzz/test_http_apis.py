"""Schemathesis over the provider-proxy's and storage-adapter's own OpenAPI documents
(issue 8): valid and deliberately invalid generated requests for every operation,
against the real services on loopback (simulator upstream, SQLite store). The property:
no 5xx from a healthy stack — a bad request is the client's mistake and gets a 4xx.

(Schemathesis' pytest plugin does not run under pytest 9, so the schema's Hypothesis
strategy drives a plain `@given`.)"""

from __future__ import annotations

from collections import Counter

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.integration.fuzz.conftest import FUZZ_FRAMES, FuzzStack
from tests.integration.storage_adapter.conftest import (
    create_database,
    make_settings,
    running_adapter,
)
from tests.support.internal_auth import PROVIDER_TOKEN, STORAGE_TOKEN, bearer
from tests.support.servers import PostgresServer, RedisServer

# Requests per API: a fifth of the WebSocket frame budget (2,000 in `make test`).
REQUESTS = max(20, FUZZ_FRAMES // 5)


def fuzz_api(base_url: str, token: str) -> Counter[int]:
    """`token`: the service's internal token, sent as the gateway sends it."""
    headers = bearer(token)
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", headers=headers)
    cases = st.one_of(
        schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE)
    )
    statuses: Counter[int] = Counter()

    @settings(
        max_examples=REQUESTS,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(cases)
    def call(case: schemathesis.Case) -> None:
        response = case.call_and_validate(
            base_url=base_url, headers=headers, checks=[not_a_server_error], timeout=30
        )
        statuses[response.status_code] += 1

    call()
    return statuses


def test_provider_proxy_answers_generated_requests_without_5xx(fuzz_stack: FuzzStack) -> None:
    statuses = fuzz_api(fuzz_stack.stack.proxy_url, PROVIDER_TOKEN)
    assert sum(statuses.values()) >= REQUESTS // 2
    assert any(200 <= status < 300 for status in statuses), statuses  # not only rejections


def test_storage_adapter_answers_generated_requests_without_5xx(fuzz_stack: FuzzStack) -> None:
    statuses = fuzz_api(fuzz_stack.stack.storage_url, STORAGE_TOKEN)
    assert sum(statuses.values()) >= REQUESTS // 2
    assert any(200 <= status < 300 for status in statuses), statuses


def test_storage_adapter_on_postgres_and_redis_answers_generated_requests_without_5xx(
    fuzz_stack: FuzzStack, postgres_srv: PostgresServer, redis_srv: RedisServer
) -> None:
    # Postgres refuses what SQLite stores (NUL bytes, some numbers): a client's bad data
    # must still be a 4xx there, never "store unavailable".
    loop = fuzz_stack.loop
    database_url = loop.run(create_database(postgres_srv))
    settings = make_settings(EXAI_DATABASE_URL=database_url, REDIS_URL=redis_srv.url)
    adapter = loop.enter(running_adapter(fuzz_stack.stack.captured, settings))
    statuses = fuzz_api(str(adapter.client.base_url).rstrip("/"), STORAGE_TOKEN)
    assert sum(statuses.values()) >= REQUESTS // 2
    assert any(200 <= status < 300 for status in statuses), statuses
