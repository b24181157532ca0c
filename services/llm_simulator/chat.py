"""The provider endpoints: `POST {prefix}/chat/completions` and `GET {prefix}/models`.

One request, in order: count it, check auth, parse, check the model, pick the fault,
wait the configured latency, then answer — or fail the way the fault says.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter
from opentelemetry import trace
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from exai_telemetry import names
from llm_simulator.delivery import malformed_json, sse_stream, wait_unless_disconnected
from llm_simulator.errors import ApiError, ErrorKind
from llm_simulator.generation import completion_text, stream_pieces, usage_for
from llm_simulator.providers import Provider, ResponseMeta
from llm_simulator.schema import MAX_BODY_BYTES, ChatRequest, parse_chat_request
from llm_simulator.settings import SimulatorSettings
from llm_simulator.state import SimulatorState
from llm_simulator.types import FAULT_HEADER, FaultMode

logger = logging.getLogger(__name__)

FAULT_ATTRIBUTE = "exai.simulator.fault"
CLIENT_CLOSED_REQUEST = 499  # nginx's code: nobody reads it, but spans and logs do
OTHER_MODEL = "other"  # `gen_ai.request.model` of a request for a model nobody serves


def check_auth(authorization: str | None) -> None:
    """Like the real APIs: any non-empty bearer token passes. The token is never kept."""
    if authorization is None:
        raise ApiError(ErrorKind.AUTH_MISSING, "missing Authorization header")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            ErrorKind.AUTH_INVALID, "invalid Authorization header: expected Bearer <key>"
        )


def error_response(
    provider: Provider, error: ApiError, headers: dict[str, str] | None = None
) -> JSONResponse:
    status, body = provider.error(error)
    headers = dict(headers or {})
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(error.retry_after_s)
    return JSONResponse(body, status_code=status, headers=headers)


async def _read_body(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(ErrorKind.BAD_REQUEST, f"request body over {MAX_BODY_BYTES} bytes")
    return bytes(body)


def model_label(provider: Provider, model: str) -> str:
    """The model as a span attribute: one of the provider's models, else `other`.

    `gen_ai.request.model` is a span-metrics dimension in the collector, so a client
    making up model names must not make up Prometheus series."""
    return model if model in provider.models else OTHER_MODEL


def _annotate_provider(provider: Provider) -> None:
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(gen_ai.GEN_AI_OPERATION_NAME, "chat")
        span.set_attribute(gen_ai.GEN_AI_PROVIDER_NAME, provider.name)


def _annotate_model(provider: Provider, chat: ChatRequest) -> None:
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(gen_ai.GEN_AI_REQUEST_MODEL, model_label(provider, chat.model))


def _annotate_fault(fault: FaultMode) -> None:
    span = trace.get_current_span()
    if span.is_recording() and fault is not FaultMode.NONE:
        span.set_attribute(FAULT_ATTRIBUTE, fault.value)


def _annotate_response(meta: ResponseMeta, prompt: int, completion: int, cached: int) -> None:
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attribute(gen_ai.GEN_AI_RESPONSE_ID, meta.id)
    span.set_attribute(gen_ai.GEN_AI_RESPONSE_MODEL, meta.model)
    span.set_attribute(gen_ai.GEN_AI_RESPONSE_FINISH_REASONS, ["stop"])
    span.set_attribute(gen_ai.GEN_AI_USAGE_INPUT_TOKENS, prompt)
    span.set_attribute(gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS, completion)
    span.set_attribute(names.CACHED_TOKENS, cached)


def provider_router(
    provider: Provider, state: SimulatorState, settings: SimulatorSettings
) -> APIRouter:
    router = APIRouter(prefix=provider.prefix, tags=[provider.name])

    @router.get("/models")
    async def list_models(request: Request) -> Response:
        try:
            check_auth(request.headers.get("authorization"))
        except ApiError as exc:
            return error_response(provider, exc)
        return JSONResponse(provider.model_list())

    @router.post("/chat/completions")
    async def chat_completions(request: Request) -> Response:
        state.stats.requests[provider.name] += 1
        state.note_headers(provider.name, request.headers.keys())
        _annotate_provider(provider)
        try:
            check_auth(request.headers.get("authorization"))
            chat = parse_chat_request(await _read_body(request))
            _annotate_model(provider, chat)
            if chat.model not in provider.models:
                raise ApiError(
                    ErrorKind.MODEL_NOT_FOUND, f"model not found: {chat.model} ({provider.name})"
                )
            fault = state.choose_fault(provider.name, request.headers.get(FAULT_HEADER))
        except ApiError as exc:
            return error_response(provider, exc)

        _annotate_fault(fault)
        if fault is not FaultMode.NONE:
            state.stats.faults[fault.value] += 1
            logger.info("injecting fault %s into %s %s", fault.value, provider.name, chat.model)

        if not await wait_unless_disconnected(request, state.latency.ms / 1000, state.stats):
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        if fault is FaultMode.HANG and not await _hang(request):
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        if fault is FaultMode.SLOW_FIRST_TOKEN and not await wait_unless_disconnected(
            request, settings.slow_first_token_s, state.stats
        ):
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        if fault is FaultMode.RATE_LIMIT:
            retry_after = state.faults.retry_after_s
            return error_response(
                provider,
                ApiError(
                    ErrorKind.RATE_LIMITED,
                    f"rate limit reached, retry after {retry_after}s (simulated)",
                    retry_after_s=retry_after,
                ),
                state.rate_limits.exhausted(provider.name),
            )
        if fault is FaultMode.UNAUTHORIZED:
            return error_response(
                provider, ApiError(ErrorKind.AUTH_INVALID, "invalid API key (simulated)")
            )
        if fault is FaultMode.ERROR_500:
            return error_response(
                provider, ApiError(ErrorKind.SERVER_ERROR, "internal server error (simulated)")
            )
        return await _answer(request, chat, fault)

    async def _hang(request: Request) -> bool:
        state.stats.hanging += 1
        try:
            return await wait_unless_disconnected(request, settings.hang_s, state.stats)
        finally:
            state.stats.hanging -= 1

    async def _answer(request: Request, chat: ChatRequest, fault: FaultMode) -> Response:
        turns = chat.turns()
        text = completion_text(turns, chat.model)
        usage = usage_for(turns, text)
        meta = provider.new_meta(chat.model, chat.request_id)
        _annotate_response(meta, usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
        limits = state.rate_limits.spend(provider.name, tokens=usage.total_tokens)
        slow = fault is FaultMode.SLOW_STREAM
        tokens_per_s = settings.slow_tokens_per_s if slow else state.latency.tokens_per_s
        if chat.stream:
            stream = sse_stream(
                provider,
                meta,
                stream_pieces(text),
                usage,
                include_usage=chat.include_usage,
                tokens_per_s=tokens_per_s,
                malformed=fault is FaultMode.MALFORMED,
                stats=state.stats,
                truncated=fault is FaultMode.TRUNCATED_STREAM,
                long_line_bytes=settings.long_line_bytes if fault is FaultMode.LONG_LINE else 0,
            )
            return StreamingResponse(
                stream,
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", **limits},
            )
        # A JSON answer is not paced per token, except when the fault is a slow model.
        if slow and not await wait_unless_disconnected(
            request, usage.completion_tokens / tokens_per_s, state.stats
        ):
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        body = provider.completion(meta, text, usage)
        if fault is FaultMode.MALFORMED:
            return Response(malformed_json(body), media_type="application/json", headers=limits)
        return JSONResponse(body, headers=limits)

    return router
