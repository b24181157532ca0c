"""The chat-completion request as both providers accept it, parsed at the boundary.

Unknown fields (temperature, tools, …) are accepted and ignored; the fields the
simulator reads are type-checked strictly, so a client bug shows up as a 400 in the
provider's error shape instead of a silently different answer.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from llm_simulator.errors import ApiError, ErrorKind
from llm_simulator.generation import Turn

MAX_BODY_BYTES = 8 * 1024 * 1024


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: StrictStr
    text: StrictStr | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool"]
    content: StrictStr | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return " ".join(part.text for part in self.content if part.text)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: StrictBool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: StrictStr = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    # GLM lets the caller name the request; it is echoed as `request_id`.
    request_id: StrictStr | None = None

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def turns(self) -> list[Turn]:
        return [Turn(m.role, m.text()) for m in self.messages]


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    # The input is not echoed: it may be prompt text.
    return f"invalid request: {where}: {first['msg']}"


def parse_chat_request(raw: bytes) -> ChatRequest:
    try:
        data: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(ErrorKind.BAD_REQUEST, "request body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise ApiError(ErrorKind.BAD_REQUEST, "request body must be a JSON object")
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as exc:
        raise ApiError(ErrorKind.BAD_REQUEST, _describe(exc)) from exc
