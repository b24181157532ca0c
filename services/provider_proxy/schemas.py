"""The OpenAI chat-completion request, checked at the door.

Only what the proxy reads or what would fail upstream anyway is validated; every other
OpenAI field (tools, response_format, seed, …) passes through untouched — but nothing
nested deeper than :data:`MAX_JSON_DEPTH`: that is checked first, without recursion,
so that no later step (validation, copying, serialising) can hit Python's recursion
limit and turn a client's request into a 500.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, model_validator

from provider_proxy.types import JsonObject

MAX_MODEL_NAME = 128
MAX_MESSAGES = 4096
# Levels of objects and arrays, the body itself being 1. Real requests (tool schemas
# included) stay far below; Python's recursion limit is near 1,000 frames.
MAX_JSON_DEPTH = 64


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether JSON data `value` nests objects/arrays more than `limit` levels deep."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: StrictBool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: StrictStr = Field(min_length=1, max_length=MAX_MODEL_NAME)
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2, allow_inf_nan=False)
    top_p: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=None, ge=1, le=8)

    @model_validator(mode="before")
    @classmethod
    def _not_too_deep(cls, data: Any) -> Any:
        if isinstance(data, dict | list) and nested_deeper_than(data, MAX_JSON_DEPTH):
            raise ValueError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
        return data

    def upstream_body(self) -> JsonObject:
        """The request as the client sent it (unset fields stay unset)."""
        return self.model_dump(exclude_unset=True)
