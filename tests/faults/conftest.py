"""The fault suite's own no-Docker stack, and the campaign run against it once.

tests/e2e runs before this package and stops its stack when it ends (its fixtures are
package-scoped), so the fixed ports are free again here. The overrides differ from the
e2e stack's where the faults need it: provider timeouts short enough that a hanging
provider fails a call within seconds, a first-chunk objective that a provider slow to
start its answer misses, and Alertmanager updates every 10 s so that a resolution
arrives soon after it happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import AlertWebhook
from tests.faults.campaign import Campaign, figures_table, run_campaign
from tests.support.stack import ROOT, RunningStack, local_stack

pytestmark = pytest.mark.e2e

FIGURES = ROOT / "var" / "reliability-figures.md"


def _token() -> str:
    return secrets.token_urlsafe(24)


@pytest.fixture(scope="package")
def webhook() -> Iterator[AlertWebhook]:
    with AlertWebhook.serve("127.0.0.1", 9095) as hook:
        yield hook


@pytest.fixture(scope="package")
def stack(webhook: AlertWebhook) -> Iterator[RunningStack]:
    # Not under pytest's tmp dir: that is private to root, and Postgres runs as `postgres`.
    var = Path(tempfile.mkdtemp(prefix="exai-faults-"))
    var.chmod(0o755)
    overrides = {
        "EXAI_WS_TOKEN": "ws-faults-" + secrets.token_hex(16),
        # Service-to-service tokens, so the suite can call the
        # simulator's admin API and storage-adapter's API as the stack's own callers do.
        "EXAI_PROVIDER_TOKEN": _token(),
        "EXAI_STORAGE_TOKEN": _token(),
        "EXAI_SIMULATOR_ADMIN_TOKEN": _token(),
        "KIMI_API_KEY": "sk-faults-kimi-" + secrets.token_hex(12),
        "KIMI_BASE_URL": "http://127.0.0.1:8099/v1",
        "GLM_API_KEY": "faults-glm-" + secrets.token_hex(12),
        "GLM_BASE_URL": "http://127.0.0.1:8099/api/paas/v4",
        # A hanging provider fails an attempt after 4 s (3 attempts, then the breaker
        # opens). The slow provider holds its first token 3 s, inside that read timeout
        # but past this stack's first-chunk objective of 2 s (the threshold is the
        # gateway's setting, so the fault needs no 4 s read timeout raised).
        "KIMI_READ_TIMEOUT_S": "4",
        "GLM_READ_TIMEOUT_S": "4",
        "KIMI_DEADLINE_S": "20",
        "GLM_DEADLINE_S": "20",
        "SIM_SLOW_FIRST_TOKEN_S": "3",
        "EXAI_SLO_FIRST_CHUNK_S": "2",
        "EXAI_RETRY_BASE_DELAY_S": "0.05",
        "EXAI_RETRY_MAX_DELAY_S": "0.2",
        "EXAI_CIRCUIT_COOLDOWN_S": "2",
        "EXAI_CALL_TIMEOUT_S": "40",
        # Short alert timings (deploy/prometheus/rules/e2e) and quick Alertmanager groups.
        "EXAI_PROMETHEUS_RULES_OVERLAY": "deploy/prometheus/rules/e2e",
        "EXAI_ALERTMANAGER_GROUP_WAIT": "5s",
        "EXAI_ALERTMANAGER_GROUP_INTERVAL": "10s",
        "EXAI_ENVIRONMENT": "e2e",
        "EXAI_ALERT_WEBHOOK": "external",
    }
    try:
        with local_stack(var, overrides) as running:
            yield running
    finally:
        shutil.rmtree(var, ignore_errors=True)


@pytest.fixture(scope="package")
def campaign(stack: RunningStack, webhook: AlertWebhook, pytestconfig: pytest.Config) -> Campaign:
    """Every fault, once (about ten minutes); the tests read its records."""
    result = asyncio.run(run_campaign(stack, webhook))
    table = figures_table(result)
    FIGURES.parent.mkdir(exist_ok=True)
    FIGURES.write_text(table, encoding="utf-8")
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        elapsed = (result.ended_at or 0) - result.started_at
        print(f"\n[faults] campaign took {elapsed:.0f}s; figures in {FIGURES}:\n{table}")
    return result
