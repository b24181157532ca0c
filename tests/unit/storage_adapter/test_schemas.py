"""Request validation and configurable limits."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from exai_contracts.ids import CONTINUATION_ID_PATTERN
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
