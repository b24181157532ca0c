"""The tools every protocol exposes: ``chat``, ``consensus``, ``listmodels``, ``status``.

Arguments are pydantic models; their JSON Schema (tidied for clients) is what
``list_tools`` / ``tools/list`` publish, and validating against the model is validating
against that schema. A failure becomes VALIDATION_ERROR naming each bad field.

Memory (``chat`` with ``continuation_id``, see :mod:`ws_gateway.memory`): a failed or
slow storage degrades, it does not fail or hold the call. The history read has a short
budget, the history sent is trimmed to the model's budget, and the exchange is stored
after the answer if storing it takes more than a moment. The result's metadata says
what happened: ``memory.read``, ``memory.history_messages`` (sent),
``memory.history_messages_dropped`` (left out for the budget), ``memory.write``.
Writes carry idempotency keys made of a UUID drawn when the call starts and the role,
so the retries of one call's write never store a message twice, and two calls never
collide: a client may send the same prompt again with the same session and (ended)
request_id, and both exchanges are stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from exai_contracts.ids import CONTINUATION_ID_PATTERN
from exai_telemetry import names
from ws_gateway.clients import ChunkSink, Completion, ProviderClient, StorageClient
from ws_gateway.errors import (
    ProviderError,
    ProviderRejected,
    ToolNotFound,
    ToolValidationError,
)
from ws_gateway.memory import ConversationMemory, HistoryBudget, NewMessage, fit_history
from ws_gateway.settings import GatewaySettings
from ws_gateway.types import JSONObject, RequestId

logger = logging.getLogger(__name__)

MAX_CONSENSUS_MODELS = 8
HISTORY_ROLES = frozenset({"user", "assistant", "system"})
# Left of the call's deadline when the answer stops waiting for its exchange's write.
ANSWER_MARGIN_S = 0.25


# --- arguments ------------------------------------------------------------------------


ModelName = Annotated[str, Field(min_length=1, max_length=128)]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ChatArgs(_Args):
    prompt: str = Field(min_length=1, description="What to ask the model.")
    model: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Model name, e.g. kimi-k2-0905-preview or glm-4.5; default from settings.",
    )
    continuation_id: str | None = Field(
        default=None,
        pattern=CONTINUATION_ID_PATTERN,
        description="Conversation to continue; its history is sent and this exchange stored.",
    )
    temperature: float | None = Field(default=None, ge=0, le=2, description="Sampling temperature.")
    stream: bool = Field(default=False, description="Stream the answer as it is generated.")


class ConsensusArgs(_Args):
    prompt: str = Field(min_length=1, description="The question every model answers.")
    models: list[ModelName] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CONSENSUS_MODELS,
        description="Models to ask in parallel; default from settings (one Kimi, one GLM).",
    )
    temperature: float | None = Field(default=None, ge=0, le=2, description="Sampling temperature.")


class NoArgs(_Args):
    pass


def input_schema(model: type[BaseModel]) -> JSONObject:
    """The model's JSON Schema as clients like it: no titles, no `anyOf: [.., null]`."""
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
        variants = prop.pop("anyOf", None)
        if variants:
            non_null = [v for v in variants if v.get("type") != "null"]
            if len(non_null) == 1:
                prop.update(non_null[0])
        if prop.get("default", "") is None:
            del prop["default"]
    return schema


def validate_args(model: type[_Args], arguments: Mapping[str, Any]) -> Any:
    try:
        return model.model_validate(dict(arguments))
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)
        ]
        raise ToolValidationError("; ".join(problems)) from exc


# --- what a running call can do -------------------------------------------------------


def new_call_id() -> str:
    return uuid.uuid4().hex


@dataclass
class CallContext:
    session_id: str
    request_id: RequestId
    progress: Callable[[str, str], Awaitable[None]]
    # Set when the client asked for streaming and the protocol can carry chunks.
    chunk: ChunkSink | None = None
    span_attributes: dict[str, str] = field(default_factory=dict)
    # This call and no other. Neither session_id (the client's choice) nor request_id
    # (reusable once a call ended) tells two calls apart, so storage keys use this.
    call_id: str = field(default_factory=new_call_id)
    # Who is calling (from the client's token, never the token itself). Storage keeps
    # each conversation for the client that made it.
    client_id: str = "default"
    # When the call started (its timeout runs from here): memory I/O never eats the
    # time the answer needs to get out.
    started_at: float = field(default_factory=time.monotonic)


@dataclass
class ToolResult:
    outputs: list[JSONObject]
    metadata: JSONObject = field(default_factory=dict)
    streamed: bool = False


def text(value: str) -> JSONObject:
    return {"type": "text", "text": value}


def idempotency_key(call_id: str, role: str) -> str:
    """The storage key of one message of one call: retries of that call's write reuse
    it, and no two calls share it (see :attr:`CallContext.call_id`)."""
    return f"exai-gw:{call_id}:{role}"


# --- the tools ------------------------------------------------------------------------


StatusSource = Callable[[str], Awaitable[JSONObject]]


class Toolbox:
    DESCRIPTIONS: ClassVar[dict[str, str]] = {
        "chat": "Ask one model; with continuation_id the conversation is remembered.",
        "consensus": "Ask several models the same question in parallel; answers side by side.",
        "listmodels": "List the models the provider proxy can route to.",
        "status": "Gateway, provider-proxy and storage-adapter health and in-flight calls.",
    }
    ARGS: ClassVar[dict[str, type[_Args]]] = {
        "chat": ChatArgs,
        "consensus": ConsensusArgs,
        "listmodels": NoArgs,
        "status": NoArgs,
    }

    def __init__(
        self,
        settings: GatewaySettings,
        provider: ProviderClient,
        storage: StorageClient,
        status: StatusSource,
    ) -> None:
        self._settings = settings
        self._provider = provider
        self._status = status
        self.memory = ConversationMemory(
            storage,
            read_timeout_s=settings.memory_read_timeout_s,
            write_timeout_s=settings.memory_write_timeout_s,
        )

    @classmethod
    def specs(cls) -> list[JSONObject]:
        return [
            {"name": name, "description": cls.DESCRIPTIONS[name], "inputSchema": input_schema(args)}
            for name, args in cls.ARGS.items()
        ]

    async def call(self, name: str, arguments: Mapping[str, Any], ctx: CallContext) -> ToolResult:
        if name not in self.ARGS:
            raise ToolNotFound(f"unknown tool {name[:64]!r}")
        args = validate_args(self.ARGS[name], arguments)
        if isinstance(args, ChatArgs):
            return await self.chat(args, ctx)
        if isinstance(args, ConsensusArgs):
            return await self.consensus(args, ctx)
        if name == "listmodels":
            return await self.listmodels()
        return await self.status(ctx)

    async def chat(self, args: ChatArgs, ctx: CallContext) -> ToolResult:
        model = args.model or self._settings.default_model
        prompt: JSONObject = {"role": "user", "content": args.prompt}
        history: list[JSONObject] = []
        memory: JSONObject = {}
        cid = args.continuation_id
        if cid is not None:
            ctx.span_attributes[names.CONTINUATION_ID] = cid
            await ctx.progress("loading_history", "loading conversation history")
            stored, memory["read"] = await self.memory.read(cid, ctx.client_id)
            recent = [
                {"role": m.role, "content": m.content} for m in stored if m.role in HISTORY_ROLES
            ]
            budget = HistoryBudget.for_model(self._settings, model)
            history, dropped = fit_history(recent, prompt, budget)
            memory["history_messages"] = len(history)
            memory["history_messages_dropped"] = dropped
            if dropped:
                logger.info(
                    "history trimmed to the budget of %s: %d messages left out", model, dropped
                )
        messages = [*history, prompt]
        await ctx.progress("calling_provider", f"asking {model}")
        chunk = ctx.chunk
        if chunk is not None:
            completion = await self._provider.stream(
                model, messages, chunk, temperature=args.temperature
            )
        else:
            completion = await self._provider.complete(
                model, messages, temperature=args.temperature
            )
        metadata: JSONObject = {"model": completion.model, "usage": completion.usage}
        if completion.finish_reason:
            metadata["finish_reason"] = completion.finish_reason
        if cid is not None:
            memory["write"] = await self._remember(cid, args.prompt, completion, ctx)
            metadata["continuation_id"] = cid
            metadata["memory"] = memory
        return ToolResult([text(completion.text)], metadata, streamed=chunk is not None)

    async def _remember(
        self, cid: str, prompt: str, completion: Completion, ctx: CallContext
    ) -> str:
        exchange = [
            NewMessage("user", prompt, idempotency_key(ctx.call_id, "user")),
            NewMessage(
                "assistant",
                completion.text,
                idempotency_key(ctx.call_id, "assistant"),
                {"model": completion.model},
            ),
        ]
        # The answer is ready (and billed): it waits for its write only briefly, and
        # never past the call's own deadline.
        deadline = ctx.started_at + self._settings.call_timeout_s - ANSWER_MARGIN_S
        wait_s = min(self._settings.memory_write_wait_s, deadline - time.monotonic())
        return await self.memory.remember(cid, ctx.client_id, exchange, wait_s)

    async def consensus(self, args: ConsensusArgs, ctx: CallContext) -> ToolResult:
        models = list(dict.fromkeys(args.models or self._settings.consensus_models))
        messages = [{"role": "user", "content": args.prompt}]
        await ctx.progress("calling_provider", f"asking {len(models)} models in parallel")

        async def ask(model: str) -> Completion | ProviderError:
            try:
                return await self._provider.complete(model, messages, temperature=args.temperature)
            except ProviderError as exc:
                return exc

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(ask(model)) for model in models]
        answers = dict(zip(models, (t.result() for t in tasks), strict=True))
        failures = {m: a for m, a in answers.items() if isinstance(a, ProviderError)}
        if len(failures) == len(models):
            detail = "; ".join(f"{m}: {e.message}" for m, e in failures.items())
            message = f"all {len(models)} models failed: {detail}"
            # Every model refused by the proxy (unknown names…): the caller's mistake.
            if all(isinstance(e, ProviderRejected) for e in failures.values()):
                raise ProviderRejected(message)
            raise ProviderError(message)
        outputs = []
        per_model: JSONObject = {}
        for model, answer in answers.items():
            if isinstance(answer, ProviderError):
                outputs.append(text(f"## {model}\n\nerror: {answer.message}"))
                per_model[model] = {"ok": False, "error": answer.message}
            else:
                outputs.append(text(f"## {model}\n\n{answer.text}"))
                per_model[model] = {"ok": True, "model": answer.model, "usage": answer.usage}
        return ToolResult(outputs, {"models": per_model})

    async def listmodels(self) -> ToolResult:
        models = await self._provider.models()
        lines = [
            f"- {m['id']}" + (f" ({m['owned_by']})" if m.get("owned_by") else "") for m in models
        ]
        return ToolResult(
            [text("Available models:\n" + "\n".join(lines))],
            {"models": [m["id"] for m in models]},
        )

    async def status(self, ctx: CallContext) -> ToolResult:
        report = await self._status(ctx.session_id)
        return ToolResult([text(json.dumps(report, indent=2, sort_keys=True))], report)
