"""Prompt and completion text for the `chat` span, only with `EXAI_CAPTURE_CONTENT=true`.

The shapes are the GenAI semantic conventions' (`gen_ai.input.messages`,
`gen_ai.output.messages`): a JSON list of messages, each `{"role", "parts": [...]}`,
output messages with their `finish_reason`. Parts:

- `{"type": "text", "content": …}` for text;
- `{"type": "tool_call", "id", "name", "arguments"}` for an assistant's tool calls;
- `{"type": "tool_call_response", "id", "response"}` for a `tool` message;
- `{"type": <OpenAI part type>}` for anything else (images, audio): the type only, never
  the payload, which may be megabytes of base64.

Nothing here runs unless capture is on; the default (off) costs nothing per request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from provider_proxy.types import JsonObject

# OpenAI's `developer` role is a system prompt under another name.
_ROLES = {"developer": "system"}


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _arguments(raw: Any) -> Any:
    """Tool-call arguments as JSON when they parse (OpenAI sends a JSON string)."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def _content_parts(content: Any) -> list[JsonObject]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}] if content else []
    parts: list[JsonObject] = []
    if isinstance(content, list):
        for item in content:
            if not isinstance(item, dict):
                continue
            kind = item.get("type")
            if kind == "text" and isinstance(item.get("text"), str):
                parts.append({"type": "text", "content": item["text"]})
            else:
                parts.append({"type": str(kind) if kind else "unknown"})
    return parts


def _tool_call_parts(tool_calls: Any) -> list[JsonObject]:
    parts: list[JsonObject] = []
    if not isinstance(tool_calls, list):
        return parts
    for call in tool_calls:
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        if not isinstance(function, dict):
            function = {}
        part: JsonObject = {"type": "tool_call", "name": function.get("name")}
        if call.get("id") is not None:
            part["id"] = call["id"]
        if "arguments" in function:
            part["arguments"] = _arguments(function["arguments"])
        parts.append(part)
    return parts


def _message(message: JsonObject, default_role: str = "user") -> JsonObject:
    role = str(message.get("role") or default_role)
    role = _ROLES.get(role, role)
    if role == "tool":
        response: JsonObject = {"type": "tool_call_response", "response": message.get("content")}
        if message.get("tool_call_id") is not None:
            response["id"] = message["tool_call_id"]
        parts = [response]
    else:
        parts = _content_parts(message.get("content"))
        parts += _tool_call_parts(message.get("tool_calls"))
    result: JsonObject = {"role": role, "parts": parts}
    if isinstance(message.get("name"), str):
        result["name"] = message["name"]
    return result


def input_messages(messages: Any) -> str:
    """`gen_ai.input.messages` for an OpenAI request's `messages`."""
    items = messages if isinstance(messages, list) else []
    return _dumps([_message(m) for m in items if isinstance(m, dict)])


def _output_message(message: JsonObject, finish_reason: Any) -> JsonObject:
    result = _message(message, default_role="assistant")
    if isinstance(finish_reason, str) and finish_reason:
        result["finish_reason"] = finish_reason
    return result


def completion_output(body: JsonObject) -> str:
    """`gen_ai.output.messages` for an OpenAI completion: one message per choice."""
    messages = []
    for choice in body.get("choices") or []:
        if isinstance(choice, dict):
            message = choice.get("message")
            messages.append(
                _output_message(
                    message if isinstance(message, dict) else {}, choice.get("finish_reason")
                )
            )
    return _dumps(messages)


@dataclass
class _ToolCallDelta:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class _ChoiceDelta:
    role: str = "assistant"
    text: list[str] = field(default_factory=list)
    tool_calls: dict[int, _ToolCallDelta] = field(default_factory=dict)
    finish_reason: str | None = None

    def absorb(self, choice: JsonObject) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            if isinstance(delta.get("role"), str) and delta["role"]:
                self.role = delta["role"]
            if isinstance(delta.get("content"), str):
                self.text.append(delta["content"])
            for position, call in enumerate(delta.get("tool_calls") or []):
                if not isinstance(call, dict):
                    continue
                index = call.get("index")
                entry = self.tool_calls.setdefault(
                    index if isinstance(index, int) else position, _ToolCallDelta()
                )
                if isinstance(call.get("id"), str):
                    entry.id = call["id"]
                function = call.get("function")
                if isinstance(function, dict):
                    if isinstance(function.get("name"), str):
                        entry.name += function["name"]
                    if isinstance(function.get("arguments"), str):
                        entry.arguments.append(function["arguments"])
        if isinstance(choice.get("finish_reason"), str) and choice["finish_reason"]:
            self.finish_reason = choice["finish_reason"]

    def message(self) -> JsonObject:
        message: JsonObject = {"role": self.role, "content": "".join(self.text)}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "function": {"name": call.name, "arguments": "".join(call.arguments)},
                }
                for _, call in sorted(self.tool_calls.items())
            ]
        return message


class StreamOutput:
    """Puts streamed deltas back together into `gen_ai.output.messages`."""

    def __init__(self) -> None:
        self._choices: dict[int, _ChoiceDelta] = {}

    def absorb(self, chunk: JsonObject) -> None:
        for position, choice in enumerate(chunk.get("choices") or []):
            if isinstance(choice, dict):
                index = choice.get("index")
                key = index if isinstance(index, int) else position
                self._choices.setdefault(key, _ChoiceDelta()).absorb(choice)

    def as_json(self) -> str:
        return _dumps(
            [
                _output_message(choice.message(), choice.finish_reason)
                for _, choice in sorted(self._choices.items())
            ]
        )
