"""Provider responses → OpenAI responses, and what telemetry needs from them. Pure code.

A completion is accepted when it is a JSON object with a `choices` list; everything
else is :class:`UpstreamMalformed`. Usage is rewritten into OpenAI's shape
(`prompt_tokens_details.cached_tokens`) whichever shape the provider used. In a
stream, usage may come in any chunk (Kimi puts it inside the last choice): it is
taken out and sent once, in the final chunk.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from provider_proxy.errors import UpstreamMalformed, UpstreamServerError
from provider_proxy.types import JsonObject, ProviderName
from provider_proxy.usage import Usage, parse_usage


@dataclass
class ResponseMeta:
    response_id: str | None = None
    response_model: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    usage: Usage | None = None
    created: int | None = None


def _choices(body: JsonObject, provider: ProviderName) -> list[JsonObject]:
    choices = body.get("choices")
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise UpstreamMalformed(provider, "response has no valid `choices` list")
    return choices


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def decode_object(raw: bytes | str, provider: ProviderName, what: str) -> JsonObject:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UpstreamMalformed(provider, f"{what} is not valid JSON") from None
    if not isinstance(data, dict):
        raise UpstreamMalformed(provider, f"{what} is not a JSON object")
    return data


def parse_completion(raw: bytes, provider: ProviderName) -> tuple[JsonObject, ResponseMeta]:
    """The OpenAI-shaped completion and its telemetry facts, from a provider's 200 body."""
    body = decode_object(raw, provider, "response body")
    choices = _choices(body, provider)
    if not choices:
        raise UpstreamMalformed(provider, "response has no choices")
    meta = ResponseMeta(
        response_id=_str(body.get("id")),
        response_model=_str(body.get("model")),
        finish_reasons=[r for c in choices if (r := _str(c.get("finish_reason")))],
        usage=parse_usage(body.get("usage")),
        created=body.get("created") if isinstance(body.get("created"), int) else None,
    )
    body.setdefault("object", "chat.completion")
    body.setdefault("created", int(time.time()))
    if meta.usage is not None:
        body["usage"] = meta.usage.as_openai()
    return body, meta


def parse_chunk(data: str, provider: ProviderName) -> JsonObject:
    chunk = decode_object(data, provider, "stream event")
    if "error" in chunk:
        error = chunk["error"]
        detail = _str(error.get("message")) if isinstance(error, dict) else None
        raise UpstreamServerError(provider, 200, f"error in stream: {detail or 'no detail'}")
    _choices(chunk, provider)
    return chunk


class StreamAccumulator:
    """Collects id, model, finish reasons and usage while chunks pass through."""

    def __init__(self) -> None:
        self.meta = ResponseMeta()
        self._finish: dict[int, str] = {}

    def absorb(self, chunk: JsonObject) -> JsonObject:
        """`chunk` as the client gets it: provider usage fields taken out."""
        meta = self.meta
        meta.response_id = meta.response_id or _str(chunk.get("id"))
        meta.response_model = meta.response_model or _str(chunk.get("model"))
        if meta.created is None and isinstance(chunk.get("created"), int):
            meta.created = chunk["created"]
        usage = parse_usage(chunk.pop("usage", None))
        for position, choice in enumerate(chunk.get("choices", [])):
            usage = parse_usage(choice.pop("usage", None)) or usage
            index = choice.get("index")
            reason = _str(choice.get("finish_reason"))
            if reason is not None:
                self._finish[index if isinstance(index, int) else position] = reason
        if usage is not None:
            meta.usage = usage
        chunk.setdefault("object", "chat.completion.chunk")
        meta.finish_reasons = [self._finish[i] for i in sorted(self._finish)]
        return chunk

    def usage_chunk(self) -> JsonObject:
        """OpenAI's closing chunk for `stream_options.include_usage`: no choices, usage."""
        meta = self.meta
        return {
            "id": meta.response_id or "",
            "object": "chat.completion.chunk",
            "created": meta.created or int(time.time()),
            "model": meta.response_model or "",
            "choices": [],
            "usage": meta.usage.as_openai() if meta.usage else None,
        }
