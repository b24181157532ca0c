"""Operator endpoints: faults, latency, counters. Every `/admin/*` request needs
`Authorization: Bearer <EXAI_SIMULATOR_ADMIN_TOKEN>` (checked by
`exai_telemetry.internal_auth.InternalAuth`, installed by the app factory): whoever can
reach the simulator could otherwise make every provider call fail or hang.

- `GET/POST /admin/faults`  `{"mode", "rate"?, "provider"?, "retry_after_s"?}`;
                             `{"mode": "none"}` clears
- `GET/POST /admin/latency` `{"ms"?, "tokens_per_s"?}`; omitted fields keep their value
- `GET /admin/stats`         requests, injected faults, hanging requests, open streams, disconnects
- `GET /admin/last-request`  the header *names* (never values) of the last chat request,
                             `{"provider", "header_names"}`; `{}` before the first
- `POST /admin/reset`        start-up faults and latency, counters cleared
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from llm_simulator.state import SimulatorState
from llm_simulator.types import FaultMode, ProviderName

logger = logging.getLogger(__name__)


class FaultsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: FaultMode
    rate: float = Field(default=1.0, ge=0.0, le=1.0, allow_inf_nan=False)
    provider: ProviderName | None = None
    retry_after_s: int | None = Field(default=None, ge=0, le=3600)


class LatencyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ms: float | None = Field(default=None, ge=0, le=600_000, allow_inf_nan=False)
    tokens_per_s: float | None = Field(default=None, ge=0, le=1_000_000, allow_inf_nan=False)


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """422 with one readable line first, then the details (without echoing input)."""
    if not isinstance(exc, RequestValidationError):
        raise exc
    details = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    lines = [f"{'.'.join(str(p) for p in d['loc'][1:]) or 'body'}: {d['msg']}" for d in details]
    return JSONResponse({"message": "; ".join(lines), "detail": details}, status_code=422)


def admin_router(state: SimulatorState) -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["admin"])

    @router.get("/faults")
    async def get_faults() -> dict[str, Any]:
        return state.faults.as_json()

    @router.post("/faults")
    async def set_faults(body: FaultsBody) -> dict[str, Any]:
        faults = state.configure_faults(body.mode, body.rate, body.provider, body.retry_after_s)
        logger.info("global fault set to %s", faults.as_json())
        return faults.as_json()

    @router.get("/latency")
    async def get_latency() -> dict[str, Any]:
        return state.latency.as_json()

    @router.post("/latency")
    async def set_latency(body: LatencyBody) -> dict[str, Any]:
        state.update_latency(body.ms, body.tokens_per_s)
        logger.info("latency set to %s", state.latency.as_json())
        return state.latency.as_json()

    @router.get("/stats")
    async def get_stats() -> dict[str, Any]:
        return state.stats.as_json()

    @router.get("/last-request")
    async def get_last_request() -> dict[str, Any]:
        seen = state.last_headers
        return seen.as_json() if seen is not None else {}

    @router.post("/reset")
    async def reset() -> dict[str, Any]:
        state.reset()
        return {"faults": state.faults.as_json(), "latency": state.latency.as_json()}

    return router
