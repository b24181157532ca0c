"""Client labels, rate-limit headers and the upstream timing contract, as pure logic."""

from __future__ import annotations

import pytest

from exai_contracts.timing import (
    format_upstream,
    parse_sse_comment,
    parse_upstream,
    sse_comment,
)
from provider_proxy.telemetry import MAX_CLIENT_LABELS, ClientLabels, RateLimits


def test_client_labels_are_bounded_and_never_a_secret() -> None:
    labels = ClientLabels(max_labels=2, secrets={"sk-the-proxy-token-0123456789"})
    assert labels.label(None) == "unknown"
    assert labels.label("team-a") == "team-a"
    assert labels.label("not a client id") == "other"
    assert labels.label("x" * 65) == "other"  # longer than a client id may be
    assert labels.label("sk-the-proxy-token-0123456789") == "other"
    assert labels.label("team-b") == "team-b"
    assert labels.label("team-c") == "other"  # over the bound
    assert labels.label("team-a") == "team-a"  # seen before: still itself
    assert MAX_CLIENT_LABELS >= 16


def test_rate_limits_keep_the_last_figures_per_provider_and_resource() -> None:
    limits = RateLimits()
    limits.observe("kimi", {"x-ratelimit-limit-requests": "500", "content-type": "json"})
    limits.observe(
        "kimi",
        {
            "x-ratelimit-remaining-requests": "499",
            "x-ratelimit-limit-tokens": "200000",
            "x-ratelimit-remaining-tokens": "1234.0",
        },
    )
    limits.observe("glm", {})  # a provider that sends none has no figures
    assert limits.limit == {("kimi", "requests"): 500, ("kimi", "tokens"): 200_000}
    assert limits.remaining == {("kimi", "requests"): 499, ("kimi", "tokens"): 1234}


@pytest.mark.parametrize("value", ["", "many", "-1", "nan", "inf"])
def test_rate_limit_headers_that_are_no_count_are_ignored(value: str) -> None:
    limits = RateLimits()
    limits.observe("kimi", {"x-ratelimit-remaining-requests": value})
    assert limits.remaining == {}


def test_upstream_timing_round_trips_through_header_and_stream_comment() -> None:
    assert format_upstream(1.2345) == "upstream;dur=1234.5"
    assert parse_upstream("upstream;dur=1234.5") == pytest.approx(1.2345)
    assert parse_upstream('db;dur=3, upstream;desc="LLM";dur=20') == pytest.approx(0.02)
    assert parse_upstream(format_upstream(-1)) == 0.0
    for missing in (None, "", "db;dur=5", "upstream", "upstream;dur=abc"):
        assert parse_upstream(missing) is None
    line = sse_comment(0.5).decode().rstrip("\n")
    assert line.startswith(":")  # an SSE comment: OpenAI clients skip it
    assert parse_sse_comment(line) == pytest.approx(0.5)
    assert parse_sse_comment('data: {"x": 1}') is None
