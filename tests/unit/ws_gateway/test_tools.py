"""Tool argument validation, published schemas, idempotency keys, SSE parsing."""

from __future__ import annotations

from typing import Any

import pytest

from ws_gateway.clients import ProviderClient
from ws_gateway.errors import ProviderError, ToolValidationError
from ws_gateway.tools import (
    ChatArgs,
    ConsensusArgs,
    NoArgs,
    Toolbox,
    idempotency_key,
    validate_args,
)


def test_every_tool_is_published_with_an_object_schema() -> None:
    specs = {spec["name"]: spec for spec in Toolbox.specs()}
    assert set(specs) == {"chat", "consensus", "listmodels", "status"}
    for spec in specs.values():
        assert spec["description"]
        assert spec["inputSchema"]["type"] == "object"
        assert spec["inputSchema"]["additionalProperties"] is False
    chat = specs["chat"]["inputSchema"]
    assert chat["required"] == ["prompt"]
    assert set(chat["properties"]) == {
        "prompt",
        "model",
        "continuation_id",
        "temperature",
        "stream",
    }
    # Optional fields read as plain types, not `anyOf: [.., null]`.
    assert chat["properties"]["model"]["type"] == "string"
    assert chat["properties"]["temperature"] == {
        "description": "Sampling temperature.",
        "maximum": 2,
        "minimum": 0,
        "type": "number",
    }
    assert specs["consensus"]["inputSchema"]["properties"]["models"]["type"] == "array"


def test_valid_arguments_parse() -> None:
    args = validate_args(ChatArgs, {"prompt": "hi", "temperature": 1, "continuation_id": "c-1"})
    assert args == ChatArgs(prompt="hi", temperature=1.0, continuation_id="c-1")
    assert validate_args(NoArgs, {}) == NoArgs()


@pytest.mark.parametrize(
    ("model", "arguments", "fragments"),
    [
        (ChatArgs, {}, ["prompt: Field required"]),
        (ChatArgs, {"prompt": ""}, ["prompt:"]),
        (ChatArgs, {"prompt": 5}, ["prompt: Input should be a valid string"]),
        (ChatArgs, {"prompt": "x", "temperature": 3}, ["temperature:"]),
        (ChatArgs, {"prompt": "x", "temperature": "hot"}, ["temperature:"]),
        (ChatArgs, {"prompt": "x", "continuation_id": "has space"}, ["continuation_id:"]),
        (ChatArgs, {"prompt": "x", "stream": "yes"}, ["stream:"]),
        (ChatArgs, {"prompt": "x", "extra": 1}, ["extra: Extra inputs are not permitted"]),
        (ConsensusArgs, {"prompt": "x", "models": []}, ["models:"]),
        (ConsensusArgs, {"prompt": "x", "models": ["a", 3]}, ["models.1:"]),
        (ConsensusArgs, {"prompt": "x", "models": [f"m{i}" for i in range(9)]}, ["models:"]),
        (NoArgs, {"verbose": True}, ["verbose:"]),
        (ChatArgs, {"temperature": -1}, ["prompt: Field required", "temperature:"]),
    ],
)
def test_invalid_arguments_name_every_bad_field(
    model: Any, arguments: dict[str, Any], fragments: list[str]
) -> None:
    with pytest.raises(ToolValidationError) as info:
        validate_args(model, arguments)
    assert str(info.value).startswith("VALIDATION_ERROR: ")
    for fragment in fragments:
        assert fragment in info.value.message


def test_validation_messages_do_not_echo_the_input() -> None:
    with pytest.raises(ToolValidationError) as info:
        validate_args(ChatArgs, {"prompt": "x", "model": {"secret": "sk-do-not-echo"}})
    assert "sk-do-not-echo" not in info.value.message


def test_idempotency_keys_are_stable_per_call_and_role() -> None:
    key = idempotency_key("sess", "r1", "conv", "hello", "user")
    assert key == idempotency_key("sess", "r1", "conv", "hello", "user")
    assert key.endswith(":user")
    others = {
        idempotency_key("sess", "r1", "conv", "hello", "assistant"),
        idempotency_key("sess2", "r1", "conv", "hello", "user"),
        idempotency_key("sess", "r2", "conv", "hello", "user"),
        idempotency_key("sess", 1, "conv", "hello", "user"),
        idempotency_key("sess", "1", "conv", "hello", "user"),
        idempotency_key("sess", "r1", "conv2", "hello", "user"),
        # a client that restarts its request counter with a new prompt is a new message
        idempotency_key("sess", "r1", "conv", "a different prompt", "user"),
    }
    assert key not in others and len(others) == 7
    assert "hello" not in key and len(key) < 128


def sse(line: str, state: dict[str, Any] | None = None) -> str | None:
    return ProviderClient._sse_delta(line, "m", state if state is not None else {"model": "m"})


def test_sse_lines() -> None:
    state: dict[str, Any] = {"model": "m", "finish_reason": None, "usage": {}}
    chunk = '{"model":"kimi-x","choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}'
    assert sse(f"data: {chunk}", state) == "Hi"
    assert state["model"] == "kimi-x"
    assert sse('data: {"choices":[{"delta":{},"finish_reason":"stop"}]}', state) == ""
    assert state["finish_reason"] == "stop"
    usage = '{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"x":"y"}}'
    assert sse(f"data: {usage}", state) == ""
    assert state["usage"] == {"prompt_tokens": 3, "completion_tokens": 2}
    assert sse(": keep-alive comment") == ""
    assert sse("") == ""
    assert sse("data: [DONE]") is None


@pytest.mark.parametrize(
    "line", ["data: {broken", "data: [1]", 'data: {"error": {"message": "upstream died"}}']
)
def test_sse_errors_become_provider_errors(line: str) -> None:
    with pytest.raises(ProviderError):
        sse(line)
