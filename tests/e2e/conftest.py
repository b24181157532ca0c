"""The no-Docker stack, started once for all end-to-end tests (DESIGN §7).

The collector samples 10% of ordinary traces here, so the tests can tell tail sampling
from "keep everything". A webhook receiver stands where Alertmanager delivers
(127.0.0.1:9095/alerts). Provider keys are set to recognisable fake values so the
tests can prove they never reach a stored span.

The fixtures are package-scoped: the stack stops when the last test of tests/e2e ends,
which frees the fixed ports for the fault suite's own stack (tests/faults).
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import AlertWebhook, Jaeger, Prometheus, Simulator
from tests.support.internal_auth import local_stack_tokens
from tests.support.stack import RunningStack, local_stack

pytestmark = pytest.mark.e2e

KIMI_KEY = "sk-e2e-kimi-" + secrets.token_hex(12)
GLM_KEY = "e2e-glm-" + secrets.token_hex(12)


@pytest.fixture(scope="package")
def webhook() -> Iterator[AlertWebhook]:
    with AlertWebhook.serve("127.0.0.1", 9095) as hook:
        yield hook


@pytest.fixture(scope="package")
def stack(webhook: AlertWebhook) -> Iterator[RunningStack]:
    # Not under pytest's tmp dir: that is private to root, and Postgres runs as `postgres`.
    var = Path(tempfile.mkdtemp(prefix="exai-e2e-"))
    var.chmod(0o755)
    overrides = {
        "EXAI_WS_TOKEN": "ws-e2e-" + secrets.token_hex(16),
        "KIMI_API_KEY": KIMI_KEY,
        "KIMI_BASE_URL": "http://127.0.0.1:8099/v1",
        "GLM_API_KEY": GLM_KEY,
        "GLM_BASE_URL": "http://127.0.0.1:8099/api/paas/v4",
        "EXAI_TRACE_SAMPLE_PERCENT": "10",
        "EXAI_SPANMETRICS_FLUSH_INTERVAL": "2s",
        # Fast failures keep the alert test short; retries still happen (and are kept).
        "EXAI_RETRY_BASE_DELAY_S": "0.05",
        "EXAI_RETRY_MAX_DELAY_S": "0.2",
        "EXAI_CIRCUIT_COOLDOWN_S": "2",
        # Alert timings for tests (production ones would take ~15 minutes per alert):
        # 1-minute provider rules and quick Alertmanager groups (deploy/local-stack/stack.py).
        "EXAI_PROMETHEUS_RULES_OVERLAY": "deploy/prometheus/rules/e2e",
        "EXAI_ALERTMANAGER_GROUP_WAIT": "5s",
        "EXAI_ALERTMANAGER_GROUP_INTERVAL": "30s",
        # Not the defaults, so the alert test proves the link bases are settable.
        "EXAI_RUNBOOK_BASE_URL": "https://runbooks.e2e.example/exai/runbooks.md",
        "EXAI_GRAFANA_URL": "http://grafana.e2e.example:3000",
        "EXAI_ENVIRONMENT": "e2e",
        # The tests' own receiver listens on 127.0.0.1:9095 instead of the stack's logger.
        "EXAI_ALERT_WEBHOOK": "external",
    }
    try:
        with local_stack(var, overrides) as running:
            yield running
    finally:
        shutil.rmtree(var, ignore_errors=True)


@pytest.fixture(scope="package")
def internal_tokens(stack: RunningStack) -> dict[str, str]:
    """The service-to-service tokens the stack generated for this run, by variable
    (`EXAI_PROVIDER_TOKEN`, `EXAI_STORAGE_TOKEN`, `EXAI_SIMULATOR_ADMIN_TOKEN`)."""
    tokens = local_stack_tokens(stack.var, stack.env)
    assert len(tokens) == 3, sorted(tokens)
    return tokens


@pytest.fixture(scope="package")
def simulator(internal_tokens: dict[str, str]) -> Iterator[Simulator]:
    client = Simulator(internal_tokens["EXAI_SIMULATOR_ADMIN_TOKEN"])
    yield client
    client.http.close()


@pytest.fixture(scope="package")
def jaeger(stack: RunningStack) -> Iterator[Jaeger]:
    client = Jaeger()
    yield client
    client.http.close()


@pytest.fixture(scope="package")
def prometheus(stack: RunningStack) -> Iterator[Prometheus]:
    client = Prometheus()
    yield client
    client.http.close()
