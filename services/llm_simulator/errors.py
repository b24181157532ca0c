"""Errors the simulated providers answer with.

::

    SimulatorError
     └── ApiError   a request the provider refuses; rendered in that provider's error shape
"""

from __future__ import annotations

from enum import Enum


class ErrorKind(Enum):
    AUTH_MISSING = "auth_missing"
    AUTH_INVALID = "auth_invalid"
    MODEL_NOT_FOUND = "model_not_found"
    BAD_REQUEST = "bad_request"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"


class SimulatorError(Exception):
    """Root of the simulator's exceptions."""


class ApiError(SimulatorError):
    """An error answer; each provider maps `kind` to its own status and body."""

    def __init__(self, kind: ErrorKind, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.message}"
