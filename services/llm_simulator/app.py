"""`create_app()`: the llm-simulator as a FastAPI app (DESIGN §4b).

Kimi's API under `/v1`, GLM's under `/api/paas/v4`, operator endpoints under `/admin`,
health under `/health`. The app owns its :class:`SimulatorState`; nothing is global.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from exai_telemetry.health import ComponentHealth, Probe
from exai_telemetry.http_service import NATIVE_TELEMETRY_OFF, add_health_routes, instrument_app
from exai_telemetry.internal_auth import install_internal_auth, under
from exai_telemetry.setup import Telemetry
from llm_simulator import __version__
from llm_simulator.admin import admin_router, validation_error_handler
from llm_simulator.chat import provider_router
from llm_simulator.providers import PROVIDERS
from llm_simulator.settings import SimulatorSettings
from llm_simulator.state import SimulatorState

logger = logging.getLogger(__name__)


def create_app(settings: SimulatorSettings, telemetry: Telemetry) -> FastAPI:
    """The telemetry is the caller's: it builds it and shuts it down (tests share one
    exporter between several services, so no app may close it)."""
    state = SimulatorState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logger.info(
            "llm-simulator serving %s",
            ", ".join(f"{p.name} at {p.prefix}" for p in PROVIDERS),
        )
        yield

    app = FastAPI(
        title="EXAI llm-simulator",
        version=__version__,
        lifespan=lifespan,
        telemetry=NATIVE_TELEMETRY_OFF,
    )
    app.state.simulator = state
    for provider in PROVIDERS:
        app.include_router(provider_router(provider, state, settings))
    app.include_router(admin_router(state))
    app.add_exception_handler(RequestValidationError, validation_error_handler)

    async def fault_injection() -> ComponentHealth:
        # Always up; shows at a glance in /health whether a global fault is on.
        return ComponentHealth(True, required=False, detail={"mode": state.faults.mode.value})

    def probes() -> Sequence[Probe]:
        return (Probe("fault_injection", fault_injection, required=False),)

    add_health_routes(app, probes, __version__)
    instrument_app(app, telemetry)
    # Only the operator API: the provider APIs take any key, like a test double should.
    install_internal_auth(
        app, settings.simulator_admin_token, "EXAI_SIMULATOR_ADMIN_TOKEN", protected=under("/admin")
    )
    return app
