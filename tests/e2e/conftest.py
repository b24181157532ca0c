"""The no-Docker stack, started once for all end-to-end tests (DESIGN §7).

The collector samples 10% of ordinary traces here, so the tests can tell tail sampling
from "keep everything". A webhook receiver stands where Alertmanager delivers
(127.0.0.1:9095/alerts). Provider keys are set to recognisable fake values so the
tests can prove they never reach a stored span.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import AlertWebhook
from tests.support.stack import RunningStack, local_stack

pytestmark = pytest.mark.e2e

KIMI_KEY = "sk-e2e-kimi-" + secrets.token_hex(12)
GLM_KEY = "e2e-glm-" + secrets.token_hex(12)


@pytest.fixture(scope="session")
def webhook() -> Iterator[AlertWebhook]:
    with AlertWebhook.serve("127.0.0.1", 9095) as hook:
        yield hook


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, webhook: AlertWebhook
) -> Iterator[RunningStack]:
    var: Path = tmp_path_factory.mktemp("stack")
    overrides = {
        "EXAI_WS_TOKEN": "ws-e2e-" + secrets.token_hex(16),
        "KIMI_API_KEY": KIMI_KEY,
        "KIMI_BASE_URL": "http://127.0.0.1:8099/v1",
        "GLM_API_KEY": GLM_KEY,
        "GLM_BASE_URL": "http://127.0.0.1:8099/api/paas/v4",
        "EXAI_TRACE_SAMPLE_PERCENT": "10",
        "EXAI_TAIL_DECISION_WAIT": "4s",
        "EXAI_SPANMETRICS_FLUSH_INTERVAL": "2s",
        # Fast failures keep the alert test short; retries still happen (and are kept).
        "EXAI_RETRY_BASE_DELAY_S": "0.05",
        "EXAI_RETRY_MAX_DELAY_S": "0.2",
        "EXAI_CIRCUIT_COOLDOWN_S": "2",
        "EXAI_ENVIRONMENT": "e2e",
    }
    with local_stack(var, overrides) as running:
        yield running
