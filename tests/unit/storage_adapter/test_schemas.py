"""Request validation and configurable limits."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from exai_contracts.ids import CONTINUATION_ID_PATTERN
from storage_adapter.checks import (
    MAX_METADATA_DEPTH,
    check_text,
    clean_metadata,
    is_tracing_key,
    text_problem,
)
from storage_adapter.errors import LimitExceeded
from storage_adapter.schemas import (
    AppendMessageBody,
    CreateConversationBody,
    Limits,
)

LIMITS = Limits(max_content_chars=5, max_metadata_bytes=20, history_default=3, history_max=10)


@pytest.mark.parametrize(
    ("candidate", "valid"),
    [
        ("abc", True),
        ("A-b_9", True),
        ("x" * 128, True),
        ("ab", False),
        ("x" * 129, False),
        ("has space", False),
        ("dot.ted", False),
        ("slash/x", False),
        ("ünï", False),
        ("abc\n", False),
    ],
)
def test_continuation_id_format(candidate: str, valid: bool) -> None:
    assert bool(re.fullmatch(CONTINUATION_ID_PATTERN.strip("^$"), candidate)) is valid
    if valid:
        assert CreateConversationBody(continuation_id=candidate).continuation_id == candidate
    else:
        with pytest.raises(ValidationError):
            CreateConversationBody(continuation_id=candidate)


@pytest.mark.parametrize("role", ["user", "assistant", "system", "tool"])
def test_every_role_is_accepted(role: str) -> None:
    body = AppendMessageBody.model_validate({"role": role, "content": "", "idempotency_key": "k:1"})
    assert body.role == role and body.metadata == {}


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"role": "developer"}, "role"),
        ({"content": None}, "content"),
        ({"content": ["a"]}, "content"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "x" * 256}, "idempotency_key"),
        ({"idempotency_key": "tab\tkey"}, "idempotency_key"),
        ({"metadata": "text"}, "metadata"),
    ],
)
def test_invalid_messages_name_the_field(patch: dict[str, Any], field: str) -> None:
    body = {"role": "user", "content": "hi", "idempotency_key": "k", **patch}
    with pytest.raises(ValidationError) as caught:
        AppendMessageBody.model_validate(body)
    assert [e["loc"][0] for e in caught.value.errors()] == [field]


def test_content_limit_names_the_setting() -> None:
    LIMITS.check_content("12345")
    with pytest.raises(LimitExceeded, match=r"6 characters.*EXAI_MAX_CONTENT_CHARS"):
        LIMITS.check_content("123456")


def test_metadata_limit_counts_json_bytes() -> None:
    LIMITS.check_metadata({"a": "x" * 12})  # {"a":"xxxxxxxxxxxx"} is 20 bytes
    with pytest.raises(LimitExceeded, match="EXAI_MAX_METADATA_BYTES"):
        LIMITS.check_metadata({"a": "é" * 7})  # escaped non-ASCII counts as sent


def test_history_limit_defaults_and_bounds() -> None:
    assert LIMITS.history_limit(None) == 3
    assert LIMITS.history_limit(0) == 0
    assert LIMITS.history_limit(10) == 10
    with pytest.raises(LimitExceeded, match="EXAI_HISTORY_MAX_LIMIT"):
        LIMITS.history_limit(11)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"content": "a\x00b"}, "content"),
        ({"content": "\ud800"}, "content"),
        ({"metadata": {"n": float("nan")}}, "metadata"),
        ({"metadata": {"n": [float("inf")]}}, "metadata"),
        ({"metadata": {"n": {"m": -float("inf")}}}, "metadata"),
        ({"metadata": {"k\x00": 1}}, "metadata"),
        ({"metadata": {"\udc80": 1}}, "metadata"),
        ({"metadata": {"a": ["x\x00"]}}, "metadata"),
    ],
)
def test_what_no_store_can_hold_is_refused(patch: dict[str, Any], field: str) -> None:
    body = {"role": "user", "content": "hi", "idempotency_key": "k", **patch}
    with pytest.raises(ValidationError) as caught:
        AppendMessageBody.model_validate(body)
    errors = caught.value.errors()
    assert [e["loc"][0] for e in errors] == [field]
    assert "\x00" not in errors[0]["msg"] and "nan" not in errors[0]["msg"].lower()


def test_titles_are_checked_too() -> None:
    for title in ("a\x00", "\udfff"):
        with pytest.raises(ValidationError):
            CreateConversationBody(title=title)
    with pytest.raises(ValidationError):
        CreateConversationBody(metadata={"x": float("nan")})


def test_metadata_depth_is_bounded_without_recursion() -> None:
    nested: Any = 1
    for _ in range(MAX_METADATA_DEPTH - 1):
        nested = [nested]
    assert clean_metadata({"a": nested}) == {"a": nested}  # exactly at the limit
    too_deep: Any = 1
    for _ in range(100_000):  # far past Python's recursion limit: refused all the same
        too_deep = {"k": too_deep}
    with pytest.raises(ValueError, match="deeper than"):
        clean_metadata({"a": too_deep})


def test_tracing_keys_are_dropped_at_any_depth() -> None:
    metadata = {
        "traceparent": "00-x-y-01",
        "TraceState": "a=b",
        "baggage": "k=v",
        "x_b3_traceid": "1",
        "X-B3-Sampled": "1",
        "uberctx-user": "u",
        "model": "m",
        "nested": [{"Baggage": "k=v", "keep": True}],
        "traced": False,
    }
    cleaned = clean_metadata(metadata)
    assert cleaned == {"model": "m", "nested": [{"keep": True}], "traced": False}
    assert metadata["traceparent"] == "00-x-y-01"  # a copy: the input is left alone
    body = AppendMessageBody.model_validate(
        {"role": "user", "content": "hi", "idempotency_key": "k", "metadata": metadata}
    )
    assert body.metadata == cleaned
    assert CreateConversationBody(metadata={"b3": "1", "t": 1}).metadata == {"t": 1}


@pytest.mark.parametrize("key", ["traceparent", "BAGGAGE", "trace_state", "x-b3-spanid"])
def test_tracing_key_names(key: str) -> None:
    assert is_tracing_key(key) is (key != "trace_state")


def test_storable_values_pass_unchanged() -> None:
    metadata = {"s": "tab\t😀", "i": 10**40, "f": -0.5, "b": True, "n": None, "l": [], "d": {}}
    assert clean_metadata(metadata) == metadata
    assert check_text("ok 😀") == "ok 😀"
    assert text_problem("a\x00") is not None and text_problem("\ud800") is not None
