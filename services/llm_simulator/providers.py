"""Kimi (Moonshot) and GLM (Zhipu) response shapes: what each provider's JSON looks like.

Where they differ (and a client adapter has to care):

==================  ===============================  ======================================
                    Kimi (``/v1``)                   GLM (``/api/paas/v4``)
==================  ===============================  ======================================
cached tokens       ``usage.cached_tokens``          ``usage.prompt_tokens_details.cached_tokens``
stream usage        in ``choices[0].usage`` of the   top-level ``usage`` on the last chunk
                    finish chunk; with
                    ``stream_options.include_usage``
                    also an OpenAI-style trailing
                    chunk (``choices: []``)
``object`` field    present                          absent
``request_id``      absent                           present (echoes the caller's)
error body          ``{"error": {"message", "type"}}``  ``{"error": {"code", "message"}}``
unknown model       404 ``resource_not_found_error``  400 code ``1211``
==================  ===============================  ======================================
"""

from __future__ import annotations

import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from llm_simulator.errors import ApiError, ErrorKind
from llm_simulator.generation import Usage
from llm_simulator.types import ProviderName

Json = dict[str, Any]
FINISH_REASON = "stop"


@dataclass(frozen=True)
class ResponseMeta:
    """What every body and chunk of one response repeats."""

    id: str
    created: int
    model: str
    request_id: str


class Provider(ABC):
    name: ClassVar[ProviderName]
    prefix: ClassVar[str]
    models: ClassVar[tuple[str, ...]]
    owned_by: ClassVar[str]
    # Every model "exists" since this fixed moment, so `GET …/models` is stable.
    MODELS_CREATED: ClassVar[int] = 1_735_689_600

    def new_meta(self, model: str, request_id: str | None = None) -> ResponseMeta:
        response_id = self._new_id()
        return ResponseMeta(response_id, int(time.time()), model, request_id or response_id)

    def model_list(self) -> Json:
        return {
            "object": "list",
            "data": [
                {
                    "id": m,
                    "object": "model",
                    "created": self.MODELS_CREATED,
                    "owned_by": self.owned_by,
                }
                for m in self.models
            ],
        }

    def error(self, error: ApiError) -> tuple[int, Json]:
        """HTTP status and body for `error` in this provider's shape."""
        return self._error(error.kind, error.message)

    def message(self, text: str) -> Json:
        return {"role": "assistant", "content": text}

    def opening_chunks(self, meta: ResponseMeta) -> list[Json]:
        return []

    @abstractmethod
    def _new_id(self) -> str: ...

    @abstractmethod
    def _error(self, kind: ErrorKind, message: str) -> tuple[int, Json]: ...

    @abstractmethod
    def usage(self, usage: Usage) -> Json: ...

    @abstractmethod
    def completion(self, meta: ResponseMeta, text: str, usage: Usage) -> Json: ...

    @abstractmethod
    def content_chunk(self, meta: ResponseMeta, piece: str) -> Json: ...

    @abstractmethod
    def closing_chunks(
        self, meta: ResponseMeta, usage: Usage, include_usage: bool
    ) -> list[Json]: ...


class Kimi(Provider):
    name = "kimi"
    prefix = "/v1"
    models = (
        "kimi-k2-0905-preview",
        "kimi-k2-0711-preview",
        "kimi-k2-turbo-preview",
        "kimi-latest",
        "moonshot-v1-8k",
        "moonshot-v1-32k",
        "moonshot-v1-128k",
    )
    owned_by = "moonshot"

    _ERRORS: ClassVar[dict[ErrorKind, tuple[int, str]]] = {
        ErrorKind.AUTH_MISSING: (401, "invalid_authentication_error"),
        ErrorKind.AUTH_INVALID: (401, "invalid_authentication_error"),
        ErrorKind.MODEL_NOT_FOUND: (404, "resource_not_found_error"),
        ErrorKind.BAD_REQUEST: (400, "invalid_request_error"),
        ErrorKind.RATE_LIMITED: (429, "rate_limit_reached_error"),
        ErrorKind.SERVER_ERROR: (500, "server_error"),
    }

    def _new_id(self) -> str:
        return f"chatcmpl-{uuid.uuid4().hex[:24]}"

    def _error(self, kind: ErrorKind, message: str) -> tuple[int, Json]:
        status, error_type = self._ERRORS[kind]
        return status, {"error": {"message": message, "type": error_type}}

    def usage(self, usage: Usage) -> Json:
        return {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "cached_tokens": usage.cached_tokens,
        }

    def _envelope(self, meta: ResponseMeta, kind: str) -> Json:
        return {"id": meta.id, "object": kind, "created": meta.created, "model": meta.model}

    def completion(self, meta: ResponseMeta, text: str, usage: Usage) -> Json:
        return {
            **self._envelope(meta, "chat.completion"),
            "choices": [
                {"index": 0, "message": self.message(text), "finish_reason": FINISH_REASON}
            ],
            "usage": self.usage(usage),
        }

    def _chunk(self, meta: ResponseMeta, choice: Json) -> Json:
        return {**self._envelope(meta, "chat.completion.chunk"), "choices": [choice]}

    def opening_chunks(self, meta: ResponseMeta) -> list[Json]:
        delta = {"role": "assistant", "content": ""}
        return [self._chunk(meta, {"index": 0, "delta": delta, "finish_reason": None})]

    def content_chunk(self, meta: ResponseMeta, piece: str) -> Json:
        return self._chunk(meta, {"index": 0, "delta": {"content": piece}, "finish_reason": None})

    def closing_chunks(self, meta: ResponseMeta, usage: Usage, include_usage: bool) -> list[Json]:
        finish = {
            "index": 0,
            "delta": {},
            "finish_reason": FINISH_REASON,
            "usage": self.usage(usage),
        }
        chunks = [self._chunk(meta, finish)]
        if include_usage:
            chunks.append(
                {
                    **self._envelope(meta, "chat.completion.chunk"),
                    "choices": [],
                    "usage": self.usage(usage),
                }
            )
        return chunks


class Glm(Provider):
    name = "glm"
    prefix = "/api/paas/v4"
    models = ("glm-4.5", "glm-4.5-air", "glm-4.5-flash", "glm-4.6")
    owned_by = "z-ai"

    _ERRORS: ClassVar[dict[ErrorKind, tuple[int, str]]] = {
        ErrorKind.AUTH_MISSING: (401, "1001"),
        ErrorKind.AUTH_INVALID: (401, "1000"),
        ErrorKind.MODEL_NOT_FOUND: (400, "1211"),
        ErrorKind.BAD_REQUEST: (400, "1214"),
        ErrorKind.RATE_LIMITED: (429, "1302"),
        ErrorKind.SERVER_ERROR: (500, "500"),
    }

    def _new_id(self) -> str:
        return f"{time.strftime('%Y%m%d%H%M%S', time.gmtime())}{uuid.uuid4().hex[:18]}"

    def _error(self, kind: ErrorKind, message: str) -> tuple[int, Json]:
        status, code = self._ERRORS[kind]
        return status, {"error": {"code": code, "message": message}}

    def usage(self, usage: Usage) -> Json:
        return {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        }

    def _envelope(self, meta: ResponseMeta) -> Json:
        return {
            "id": meta.id,
            "request_id": meta.request_id,
            "created": meta.created,
            "model": meta.model,
        }

    def completion(self, meta: ResponseMeta, text: str, usage: Usage) -> Json:
        return {
            **self._envelope(meta),
            "choices": [
                {"index": 0, "message": self.message(text), "finish_reason": FINISH_REASON}
            ],
            "usage": self.usage(usage),
        }

    def content_chunk(self, meta: ResponseMeta, piece: str) -> Json:
        delta = {"role": "assistant", "content": piece}
        return {**self._envelope(meta), "choices": [{"index": 0, "delta": delta}]}

    def closing_chunks(self, meta: ResponseMeta, usage: Usage, include_usage: bool) -> list[Json]:
        # GLM reports usage on its last chunk whether or not it was asked to.
        choice = {
            "index": 0,
            "finish_reason": FINISH_REASON,
            "delta": {"role": "assistant", "content": ""},
        }
        return [{**self._envelope(meta), "choices": [choice], "usage": self.usage(usage)}]


PROVIDERS: tuple[Provider, ...] = (Kimi(), Glm())
