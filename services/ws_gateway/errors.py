"""The gateway's exceptions and the error codes clients see (DESIGN §3a).

Every failure a client is told about is a :class:`CallError` whose ``code`` becomes the
``error.code`` of the native error frame (or the prefix of an MCP ``isError`` result).
Third-party errors (httpx, pydantic) are translated into these at the boundary.

:data:`CLIENT_ERROR_CODES` are the caller's mistakes (the call's outcome is
``client_error``, not ``error``: they are no failure of the service). A provider-proxy
4xx is one of them (:class:`ProviderRejected`, e.g. an unknown model): the proxy refused
the request as asked, so the client is told VALIDATION_ERROR with the proxy's message.
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


# The caller's mistakes: the request itself is wrong, retrying it unchanged cannot help.
CLIENT_ERROR_CODES = frozenset(
    {ErrorCode.INVALID_REQUEST, ErrorCode.TOOL_NOT_FOUND, ErrorCode.VALIDATION_ERROR}
)


def is_client_error(code: ErrorCode) -> bool:
    return code in CLIENT_ERROR_CODES


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


class ProviderRejected(ProviderError):
    """provider-proxy refused the request as the client asked it (a 4xx such as
    ``model_not_found``). Still a ProviderError, so consensus reports it per model."""

    code = ErrorCode.VALIDATION_ERROR


class StorageError(CallError):
    code = ErrorCode.STORAGE_ERROR
