"""The canary's exceptions (the tree is in the package docstring).

A :class:`CheckFailed` carries a bounded ``reason`` (the span's ``error.type``) and a
human ``detail`` for the log line; neither ever holds the token.
"""

from __future__ import annotations

import re

_CODE = re.compile(r"[A-Z][A-Z_]{0,31}")


class CanaryError(Exception):
    """Root of every exception the canary raises on purpose."""


class CheckFailed(CanaryError):
    reason = "error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


class GatewayUnreachable(CheckFailed):
    reason = "connect"


class CheckTimeout(CheckFailed):
    reason = "timeout"


class Unauthorized(CheckFailed):
    reason = "unauthorized"


class ConnectionLost(CheckFailed):
    reason = "closed"


class ErrorFrame(CheckFailed):
    """The gateway's error code is the reason: a fixed set (ws_gateway.errors.ErrorCode);
    anything else a frame claims becomes `error_frame`, so the reason stays bounded."""

    def __init__(self, code: object, message: str) -> None:
        super().__init__(message)
        self.reason = code if isinstance(code, str) and _CODE.fullmatch(code) else "error_frame"


class GatewayUnhealthy(CheckFailed):
    reason = "unhealthy"


class ProtocolViolation(CheckFailed):
    reason = "protocol"
