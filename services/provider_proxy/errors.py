"""Errors of the provider proxy, each knowing how it is answered to the client.

::

    ProxyError                     a bug in the proxy (500)
     ├── InvalidRequest            the client's request is refused (400)
     │    └── UnknownModel         no provider serves the model (400)
     ├── CircuitOpen               the provider's breaker is open, no fallback (503)
     ├── DeadlineExceeded          the request's total deadline passed (504)
     ├── PoolExhausted             no free connection in our own pool to the provider (503)
     ├── ClientDisconnected        the client went away; nobody reads the answer (499)
     └── UpstreamError             the provider failed; retryable ones are retried
          ├── UpstreamTimeout       connect/write timeout, HTTP 408 (504 when it is the last word)
          │    └── UpstreamReadTimeout  no answer after the request was sent: not retried
          ├── UpstreamConnectError  no connection, or it broke (502)
          ├── UpstreamRateLimited   429, carries Retry-After (502 once retries are spent)
          ├── UpstreamServerError   5xx (502)
          ├── UpstreamRejected      another 4xx: 400/404/413/422 passed on, else 502
          └── UpstreamMalformed     200 whose body is not what the API promises (502)
               ├── UpstreamTruncated  a stream that ended without `[DONE]`
               └── UpstreamTooLarge   a body, SSE line or stream over its configured limit

Every class has `error_type` (the bounded `error.type` value on spans and metrics),
`status_code` and `code` (the OpenAI-style error body), and `call_outcome`: how a
logical call that ended with it is counted (`exai.outcome` on `exai.provider.requests`).
Only `error` is the provider's failure (ProviderErrorRatioHigh counts nothing else):

- `client_error`  the provider refused the request as the client sent it (400/404/413/422)
- `config_error`  the provider refused *us* (401/403, any other 4xx): a key or setup problem
- `proxy_error`   a bug in the proxy, or its own connection pool was full
- `deadline_exceeded`  the request's total deadline ran out (retries and fallback included)
- `cancelled`     the client went away
"""

from __future__ import annotations

from typing import ClassVar

from provider_proxy.types import AttemptOutcome, CallOutcome, ProviderName, RetryReason


class ProxyError(Exception):
    """Root of the proxy's exceptions; raised as itself, it is a bug of ours."""

    error_type: ClassVar[str] = "internal_error"
    status_code: ClassVar[int] = 500
    openai_type: ClassVar[str] = "server_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def code(self) -> str:
        return self.error_type

    @property
    def call_outcome(self) -> CallOutcome:
        return "proxy_error"

    @property
    def client_status(self) -> int:
        return self.status_code

    def __str__(self) -> str:
        return self.message


class InvalidRequest(ProxyError):
    error_type = "invalid_request"
    status_code = 400
    openai_type = "invalid_request_error"

    @property
    def call_outcome(self) -> CallOutcome:
        return "client_error"


class UnknownModel(InvalidRequest):
    error_type = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"model {model!r} is not served by this proxy (see GET /v1/models)")
        self.model = model


class CircuitOpen(ProxyError):
    error_type = "circuit_open"
    status_code = 503
    openai_type = "service_unavailable_error"

    def __init__(self, provider: ProviderName) -> None:
        super().__init__(f"{provider} is unavailable (circuit open); try again later")
        self.provider = provider

    @property
    def call_outcome(self) -> CallOutcome:
        return "error"  # the breaker opened on the provider's own failures


class DeadlineExceeded(ProxyError):
    error_type = "deadline_exceeded"
    status_code = 504
    openai_type = "timeout_error"

    def __init__(self, deadline_s: float) -> None:
        super().__init__(f"no answer within the request deadline of {deadline_s:g}s")
        self.deadline_s = deadline_s

    @property
    def call_outcome(self) -> CallOutcome:
        # Retries, back-off waits and a fallback all spend the one budget: running out
        # of it is no verdict on the provider (a silent provider is a read timeout).
        return "deadline_exceeded"


class PoolExhausted(ProxyError):
    """Every connection of our pool to the provider is busy: the proxy is saturated,
    the provider may be fine. Not retried (the wait was the pool timeout already)."""

    error_type = "pool_exhausted"
    status_code = 503
    openai_type = "service_unavailable_error"

    def __init__(self, provider: ProviderName) -> None:
        super().__init__(
            f"{provider}: no free upstream connection in time (EXAI_UPSTREAM_MAX_CONNECTIONS);"
            " try again later"
        )
        self.provider = provider


class ClientDisconnected(ProxyError):
    error_type = "cancelled"
    status_code = 499  # nginx's "client closed request": only ever seen in spans and logs
    openai_type = "cancelled"

    def __init__(self) -> None:
        super().__init__("the client closed the connection before the answer was ready")

    @property
    def call_outcome(self) -> CallOutcome:
        return "cancelled"


class UpstreamError(ProxyError):
    """The provider did not give a usable answer."""

    status_code = 502
    openai_type = "upstream_error"
    outcome: ClassVar[AttemptOutcome] = "server_error"
    retry_reason: ClassVar[RetryReason | None] = None

    def __init__(self, provider: ProviderName, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider

    @property
    def call_outcome(self) -> CallOutcome:
        return "error"

    @property
    def retryable(self) -> bool:
        return self.retry_reason is not None

    @property
    def retry_after_s(self) -> float | None:
        return None

    @property
    def fallback_eligible(self) -> bool:
        """Whether another provider might do better (not when the request itself is bad)."""
        return True


class UpstreamTimeout(UpstreamError):
    """The request never reached the provider in full (connect or write timeout), or
    the provider said so (408): sending it again cannot bill it twice."""

    error_type = "timeout"
    status_code = 504
    openai_type = "timeout_error"
    outcome = "timeout"
    retry_reason: ClassVar[RetryReason | None] = "timeout"


class UpstreamReadTimeout(UpstreamTimeout):
    """The request was sent and no answer came in time. Not retried: the provider may
    be working on it, and a second attempt could be billed a second time."""

    retry_reason = None


class UpstreamConnectError(UpstreamError):
    error_type = "connect_error"
    outcome = "connect_error"
    retry_reason = "connect"


class UpstreamRateLimited(UpstreamError):
    error_type = "rate_limited"
    outcome = "rate_limited"
    retry_reason = "rate_limit"

    def __init__(self, provider: ProviderName, retry_after_s: float | None) -> None:
        hint = f" (Retry-After {retry_after_s:g}s)" if retry_after_s is not None else ""
        super().__init__(provider, f"rate limited{hint}")
        self._retry_after_s = retry_after_s

    @property
    def retry_after_s(self) -> float | None:
        return self._retry_after_s


class UpstreamServerError(UpstreamError):
    error_type = "server_error"
    outcome = "server_error"
    retry_reason = "server_error"

    def __init__(self, provider: ProviderName, status: int, detail: str | None = None) -> None:
        super().__init__(provider, detail or f"upstream answered HTTP {status}")
        self.upstream_status = status


class UpstreamRejected(UpstreamError):
    """A 4xx other than 429: retrying the same request cannot help."""

    error_type = "rejected"
    outcome = "rejected"
    # Statuses that describe the client's request; anything else (401, 403, …) is the
    # proxy's own configuration problem and answered as a bad gateway.
    PASSED_ON: ClassVar[frozenset[int]] = frozenset({400, 404, 413, 422})

    def __init__(self, provider: ProviderName, status: int, detail: str) -> None:
        super().__init__(provider, f"upstream refused the request (HTTP {status}): {detail}")
        self.upstream_status = status

    @property
    def client_status(self) -> int:
        return self.upstream_status if self.upstream_status in self.PASSED_ON else 502

    @property
    def call_outcome(self) -> CallOutcome:
        # The provider is up and answering either way; whose mistake was it?
        return "client_error" if self.upstream_status in self.PASSED_ON else "config_error"

    @property
    def fallback_eligible(self) -> bool:
        return self.client_status == 502


class UpstreamMalformed(UpstreamError):
    """Not retried: a 200 was (probably) billed, and a broken shape rarely heals."""

    error_type = "malformed_response"
    outcome = "malformed"


class UpstreamTruncated(UpstreamMalformed):
    """The stream ended before `[DONE]`: the answer may be cut anywhere."""

    error_type = "stream_truncated"


class UpstreamTooLarge(UpstreamMalformed):
    """A body, an SSE line or a whole stream over its limit (the message names it)."""

    error_type = "response_too_large"


def openai_error_body(exc: ProxyError) -> dict[str, dict[str, str | None]]:
    return {
        "error": {
            "message": exc.message,
            "type": exc.openai_type,
            "code": exc.code,
            "param": None,
        }
    }
