"""The request checks at the door: nesting depth before anything else."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from provider_proxy.schemas import MAX_JSON_DEPTH, ChatCompletionRequest, nested_deeper_than


def nest(depth: int, leaf: Any = None) -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def test_depth_counts_objects_and_arrays_without_recursion() -> None:
    assert not nested_deeper_than("text", 1)
    assert not nested_deeper_than({}, 1)
    assert nested_deeper_than({"a": []}, 1)
    assert not nested_deeper_than(nest(64), 64)
    assert nested_deeper_than(nest(65), 64)
    assert nested_deeper_than(nest(100_000), 64)  # far past the recursion limit


def request(**extra: Any) -> dict[str, Any]:
    return {"model": "glm-4.5", "messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.mark.parametrize(
    "body",
    [
        request(x=nest(600)),
        request(messages=[{"role": "user", "content": "hi", "x": nest(600)}]),
        request(messages=[{"role": "user", "content": [{"type": "text", "x": nest(600)}]}]),
    ],
)
def test_a_body_nested_too_deep_is_refused_with_a_clear_message(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match=f"nested more than {MAX_JSON_DEPTH} levels"):
        ChatCompletionRequest.model_validate(body)


def test_a_body_within_the_limit_passes_whole() -> None:
    body = request(tools=[{"type": "function", "function": {"parameters": nest(40)}}])
    assert ChatCompletionRequest.model_validate(body).upstream_body() == body
