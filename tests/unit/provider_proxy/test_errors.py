"""Which failures are whose: the outcome of a call, retries, and the client's status."""

from __future__ import annotations

import httpx
import pytest

from provider_proxy.errors import (
    CircuitOpen,
    ClientDisconnected,
    DeadlineExceeded,
    InvalidRequest,
    PoolExhausted,
    ProxyError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamReadTimeout,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamTimeout,
    UpstreamTooLarge,
    UpstreamTruncated,
)
from provider_proxy.upstream import attempt_outcome, status_error, translate

REQUEST = httpx.Request("POST", "https://api.example/v1/chat/completions")


def status(code: int, body: bytes = b"") -> UpstreamError | None:
    return status_error("kimi", code, httpx.Headers({"retry-after": "2"}), body)


@pytest.mark.parametrize(
    ("code", "outcome", "client_status"),
    [(400, "client_error", 400), (404, "client_error", 404), (413, "client_error", 413),
     (422, "client_error", 422), (401, "config_error", 502), (403, "config_error", 502),
     (405, "config_error", 502)],
)  # fmt: skip
def test_a_provider_4xx_is_never_the_providers_failure(
    code: int, outcome: str, client_status: int
) -> None:
    error = status(code, b'{"error": {"message": "no"}}')
    assert isinstance(error, UpstreamRejected)
    assert error.call_outcome == outcome
    assert error.client_status == client_status
    assert not error.retryable


@pytest.mark.parametrize(
    ("code", "kind"),
    [(408, UpstreamTimeout), (429, UpstreamRateLimited), (503, UpstreamServerError)],
)
def test_408_429_and_5xx_are_the_providers_and_retried(code: int, kind: type) -> None:
    error = status(code)
    assert error is not None and isinstance(error, kind)
    assert error.call_outcome == "error"
    assert error.retryable
    assert status(200) is None


def test_read_timeouts_are_not_retried_connect_and_write_timeouts_are() -> None:
    read = translate(httpx.ReadTimeout("slow", request=REQUEST), "glm")
    assert isinstance(read, UpstreamReadTimeout) and not read.retryable
    assert read.call_outcome == "error" and read.error_type == "timeout"
    for exc in (httpx.ConnectTimeout("x", request=REQUEST), httpx.WriteTimeout("x")):
        error = translate(exc, "glm")
        assert type(error) is UpstreamTimeout and error.retryable
    assert isinstance(translate(httpx.ConnectError("refused"), "glm"), UpstreamConnectError)


def test_a_full_pool_is_ours() -> None:
    error = translate(httpx.PoolTimeout("busy"), "kimi")
    assert isinstance(error, PoolExhausted)
    assert (error.call_outcome, error.status_code, error.code) == (
        "proxy_error",
        503,
        "pool_exhausted",
    )
    assert "EXAI_UPSTREAM_MAX_CONNECTIONS" in error.message
    assert attempt_outcome(error) == "pool_exhausted"


def test_call_outcomes_of_the_proxys_own_errors() -> None:
    assert ProxyError("bug").call_outcome == "proxy_error"
    assert attempt_outcome(ProxyError("bug")) == "error"
    assert InvalidRequest("bad").call_outcome == "client_error"
    assert DeadlineExceeded(1.0).call_outcome == "deadline_exceeded"
    assert attempt_outcome(DeadlineExceeded(1.0)) == "timeout"
    assert ClientDisconnected().call_outcome == "cancelled"
    assert CircuitOpen("kimi").call_outcome == "error"


def test_broken_streams_are_malformed_answers_of_their_own_type() -> None:
    truncated = UpstreamTruncated("glm", "stream ended without [DONE]")
    too_large = UpstreamTooLarge("glm", "stream longer than 1 bytes")
    assert (truncated.code, too_large.code) == ("stream_truncated", "response_too_large")
    for error in (truncated, too_large):
        assert error.call_outcome == "error" and not error.retryable
        assert attempt_outcome(error) == "malformed"
