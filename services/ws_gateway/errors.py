"""The gateway's exceptions and the error codes clients see (DESIGN §3a).

Every failure a client is told about is a :class:`CallError` whose ``code`` becomes the
``error.code`` of the native error frame (or the prefix of an MCP ``isError`` result).
Third-party errors (httpx, pydantic) are translated into these at the boundary.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_REQUEST = "INVALID_REQUEST"
    UNAUTHORIZED = "UNAUTHORIZED"
    TOOL_NOT_FOUND = "TOOL_NOT_FOUND"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    OVER_CAPACITY = "OVER_CAPACITY"
    TIMEOUT = "TIMEOUT"
    PROVIDER_ERROR = "PROVIDER_ERROR"
    STORAGE_ERROR = "STORAGE_ERROR"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class GatewayError(Exception):
    """Root of every exception the gateway raises on purpose."""


class CallError(GatewayError):
    """A call failed in a way the client is told about, with a code and a message."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ToolNotFound(CallError):
    code = ErrorCode.TOOL_NOT_FOUND


class ToolValidationError(CallError):
    code = ErrorCode.VALIDATION_ERROR


class OverCapacity(CallError):
    code = ErrorCode.OVER_CAPACITY


class CallTimeout(CallError):
    code = ErrorCode.TIMEOUT


class ProviderError(CallError):
    code = ErrorCode.PROVIDER_ERROR


class StorageError(CallError):
    code = ErrorCode.STORAGE_ERROR
