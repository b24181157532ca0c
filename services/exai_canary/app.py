"""`create_app()`: the canary's process: its check loops in the lifespan, and the health
endpoints every EXAI service has.

`/health/ready` is about the canary, not the gateway: ready while its loops run. The
last `status` check shows as the optional component `gateway` (down: `degraded`), so
`/health` says at a glance what the canary sees, and an orchestrator never restarts the
canary for the gateway's sake.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI

from exai_canary import __version__
from exai_canary.runner import Canary
from exai_canary.settings import CanarySettings
from exai_telemetry.health import ComponentHealth, Probe
from exai_telemetry.http_service import NATIVE_TELEMETRY_OFF, add_health_routes
from exai_telemetry.setup import Telemetry

logger = logging.getLogger(__name__)

SERVICE_NAME = "exai-canary"


def create_app(settings: CanarySettings, telemetry: Telemetry) -> FastAPI:
    """The telemetry is the caller's: it builds it and shuts it down."""
    canary = Canary(settings, telemetry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        canary.start()
        try:
            yield
        finally:
            await canary.stop()

    app = FastAPI(
        title="EXAI canary",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        telemetry=NATIVE_TELEMETRY_OFF,
    )
    app.state.canary = canary

    async def loops() -> ComponentHealth:
        return ComponentHealth(canary.running, detail={"checks": [c.name for c in canary.checks]})

    async def gateway() -> ComponentHealth:
        last = canary.states["status"].last
        if last is None:
            return ComponentHealth(True, required=False, detail={"last_check": "none yet"})
        detail: dict[str, object] = {
            "last_check": last.outcome,
            "duration_s": round(last.duration_s, 3),
        }
        if last.reason is not None:
            detail["error_type"] = last.reason
        return ComponentHealth(last.outcome == "ok", required=False, detail=detail)

    def probes() -> Sequence[Probe]:
        return (Probe("checks", loops), Probe("gateway", gateway, required=False))

    add_health_routes(app, probes, __version__)
    return app
