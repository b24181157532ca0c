"""Tool argument validation, published schemas, idempotency keys, SSE parsing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from ws_gateway.breaker import CircuitBreaker
from ws_gateway.clients import Completion, ProviderClient, StorageRejected, StoredMessage
from ws_gateway.errors import ProviderError, ToolValidationError
from ws_gateway.settings import GatewaySettings
from ws_gateway.tools import (
    CallContext,
    ChatArgs,
    ConsensusArgs,
    NoArgs,
    Toolbox,
    ToolResult,
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


def test_idempotency_keys_come_from_the_call_id_and_the_role() -> None:
    key = idempotency_key("0f" * 16, "user")
    assert key == idempotency_key("0f" * 16, "user")
    assert key.endswith(":user") and len(key) < 128
    assert key != idempotency_key("0f" * 16, "assistant")
    assert key != idempotency_key("1e" * 16, "user")


@dataclass
class FakeStorage:
    """Records appends; the first `fail_appends` of them find no conversation (404), as
    when the read that would have created it failed."""

    fail_appends: int = 0
    appended: list[tuple[str, str, str]] = field(default_factory=list)
    keys_seen: list[str] = field(default_factory=list)
    breaker: CircuitBreaker = field(default_factory=lambda: CircuitBreaker(5, 10))

    async def history(
        self, continuation_id: str, *, client_id: str, budget_s: float
    ) -> list[StoredMessage] | None:
        return [StoredMessage(role, content) for role, content, _ in self.appended]

    async def create(self, continuation_id: str, *, client_id: str, budget_s: float) -> None:
        return None

    async def append(
        self,
        continuation_id: str,
        role: str,
        content: str,
        idempotency_key: str,
        metadata: dict[str, Any] | None = None,
        *,
        client_id: str,
        budget_s: float,
    ) -> None:
        self.keys_seen.append(idempotency_key)
        if self.fail_appends:
            self.fail_appends -= 1
            raise StorageRejected("storage-adapter answered 404: no such conversation", 404)
        if all(key != idempotency_key for _, _, key in self.appended):
            self.appended.append((role, content, idempotency_key))


class FakeProvider:
    async def complete(self, model: str, messages: Any, *, temperature: Any = None) -> Completion:
        return Completion("same answer", model)


async def chat(toolbox: Toolbox, session: str, request_id: Any, prompt: str) -> ToolResult:
    async def progress(stage: str, message: str) -> None:
        return None

    args = ChatArgs(prompt=prompt, continuation_id="conv-1")
    return await toolbox.chat(args, CallContext(session, request_id, progress))


def toolbox_with(storage: FakeStorage) -> Toolbox:
    settings = GatewaySettings.model_validate({"EXAI_WS_TOKEN": "t" * 20})
    return Toolbox(settings, FakeProvider(), storage, status=None)  # type: ignore[arg-type]


async def test_two_calls_with_the_same_ids_and_prompt_are_two_exchanges() -> None:
    # session_id is client-chosen and a request_id may be reused once its call ended:
    # neither identifies a call, so they must not make the storage keys.
    storage = FakeStorage()
    toolbox = toolbox_with(storage)
    for _ in range(2):
        result = await chat(toolbox, "same-session", "same-id", "same prompt")
        assert result.metadata["memory"]["write"] == "stored"
    assert [role for role, _, _ in storage.appended] == ["user", "assistant"] * 2
    assert len({key for _, _, key in storage.appended}) == 4


async def test_a_retried_write_of_one_call_reuses_its_key() -> None:
    storage = FakeStorage(fail_appends=1)  # the first user append fails, then is retried
    toolbox = toolbox_with(storage)
    result = await chat(toolbox, "s", "r", "hello")
    assert result.metadata["memory"]["write"] == "stored"
    user_first, user_retry, assistant = storage.keys_seen
    assert user_first == user_retry and user_first.endswith(":user")
    assert (
        assistant.endswith(":assistant")
        and assistant[: -len("assistant")] == (user_first[: -len("user")])
    )
    assert [role for role, _, _ in storage.appended] == ["user", "assistant"]


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
