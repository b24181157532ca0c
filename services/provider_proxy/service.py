"""One chat request, end to end: route, call the provider, fall back, account.

The request's deadline starts with the primary provider's `*_DEADLINE_S` and covers
every attempt, back-off wait and the fallback call. A fallback is tried when the
primary failed after its retries or its circuit is open — not when the request
itself was refused, nor when the deadline is spent.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from opentelemetry import trace

from provider_proxy.completions import ResponseMeta, StreamAccumulator
from provider_proxy.deadline import Deadline
from provider_proxy.errors import CircuitOpen, ProxyError, UpstreamError, openai_error_body
from provider_proxy.retry import MIN_ATTEMPT_BUDGET_S
from provider_proxy.routing import ModelRouter, Target
from provider_proxy.sse import DONE_EVENT, encode_event
from provider_proxy.telemetry import (
    UNKNOWN_CLIENT,
    ChatCall,
    ProxyMetrics,
    RequestSummary,
    end_attempt,
)
from provider_proxy.timing import stream_trailer
from provider_proxy.types import JsonObject, ProviderName
from provider_proxy.upstream import Upstream, UpstreamStream, attempt_outcome
from provider_proxy.usage import PriceTable

logger = logging.getLogger(__name__)

OTHER_MODEL = "other"  # metric label for models outside the configured list

T = TypeVar("T")
UpstreamMethod = Callable[[Upstream, ChatCall, JsonObject, Deadline], Awaitable[T]]


@dataclass
class OpenedStream:
    """A stream whose first chunk has arrived; :meth:`events` relays it to the client.

    Whoever serves it must call :meth:`abandon` when done: a response that never
    started iterating (the client left at once) still has an upstream to close.
    """

    service: ChatService
    upstream_stream: UpstreamStream
    call: ChatCall
    deadline: Deadline
    include_usage_chunk: bool
    finished: bool = False

    def events(self) -> AsyncIterator[bytes]:
        return self.service.relay(self)

    async def abandon(self) -> None:
        """Close the upstream and record a cancelled call, unless the relay finished."""
        if self.finished:
            return
        self.finished = True
        end_attempt(self.upstream_stream.attempt_span, "cancelled", None)
        self.call.cancel()
        await self.upstream_stream.aclose()


class ChatService:
    def __init__(
        self,
        upstreams: Mapping[ProviderName, Upstream],
        router: ModelRouter,
        prices: PriceTable,
        tracer: trace.Tracer,
        metrics: ProxyMetrics,
        *,
        capture_content: bool = False,
    ) -> None:
        self._upstreams = upstreams
        self._router = router
        self._prices = prices
        self._tracer = tracer
        self._metrics = metrics
        self._capture_content = capture_content

    async def complete(self, body: JsonObject, client: str = UNKNOWN_CLIENT) -> JsonObject:
        """The OpenAI-shaped completion for a non-streaming request; `client` is the
        caller's bounded client id (telemetry.ClientLabels)."""
        (completion, meta), call, target, _ = await self._call(body, Upstream.complete, client)
        call.observe_completion(completion)
        self._succeeded(call, target, meta)
        return completion

    async def open_stream(self, body: JsonObject, client: str = UNKNOWN_CLIENT) -> OpenedStream:
        """A provider stream that has produced its first chunk (until then, attempts
        are retried and fall back exactly as for :meth:`complete`)."""
        stream, call, _, deadline = await self._call(body, Upstream.open_stream, client)
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        return OpenedStream(self, stream, call, deadline, include_usage)

    async def _call(
        self, body: JsonObject, method: UpstreamMethod[T], client: str
    ) -> tuple[T, ChatCall, Target, Deadline]:
        """`method` on the primary provider, then on the fallback if that may help."""
        primary = self._router.route(str(body["model"]))
        plan = [primary]
        fallback = self._router.fallback_for(primary)
        if fallback is not None:
            plan.append(fallback)
        upstream = self._upstreams[primary.provider]
        summary = RequestSummary(upstream.breaker.state)
        deadline = Deadline.start(upstream.adapter.timeouts.deadline_s)
        for index, target in enumerate(plan):
            upstream = self._upstreams[target.provider]
            fallback_from = plan[index - 1].provider if index else None
            call = self._start_call(upstream, target, body, client, fallback_from)
            try:
                payload = upstream.adapter.prepare(body, target.model)
                # Current while it runs, so that log lines carry the call's span.
                with trace.use_span(
                    call.span,
                    end_on_exit=False,
                    record_exception=False,
                    set_status_on_exception=False,
                ):
                    result = await method(upstream, call, payload, deadline)
            except ProxyError as exc:
                call.fail(exc)
                summary.add(call)
                if not self._may_fall_back(exc, index, plan, deadline):
                    raise
                summary.mark_fallback()
                continue
            except Exception as exc:
                call.fail(ProxyError(f"internal error ({type(exc).__name__})"))
                summary.add(call)
                raise
            except BaseException:
                call.cancel()
                summary.add(call)
                raise
            summary.add(call)
            return result, call, target, deadline
        raise AssertionError("unreachable: the plan is never empty")

    async def relay(self, opened: OpenedStream) -> AsyncIterator[bytes]:
        """SSE bytes for the client: the provider's chunks, usage once at the end, then
        `[DONE]`; a failure after the first byte becomes an error event instead of
        `[DONE]`, so no client takes a broken answer for a whole one."""
        stream, call = opened.upstream_stream, opened.call
        accumulator = StreamAccumulator()
        pending: JsonObject | None = None
        failure: ProxyError | None = None
        try:
            chunk: JsonObject | None = stream.first
            while chunk is not None:
                chunk = accumulator.absorb(chunk)
                call.observe_chunk(chunk)
                # A usage-only chunk (no choices) is the proxy's to send, once, at the end.
                if chunk["choices"]:
                    if pending is not None:
                        yield encode_event(pending)
                    # Held back one step so that usage can join the last chunk.
                    pending = chunk
                chunk = await stream.next_chunk(opened.deadline)
        except ProxyError as exc:
            failure = exc
        except Exception:
            logger.exception("relaying the %s stream failed", call.provider)
            failure = ProxyError("internal error")
        except BaseException:
            await opened.abandon()
            raise
        opened.finished = True
        await stream.aclose()
        if failure is not None:
            end_attempt(stream.attempt_span, attempt_outcome(failure), failure)
            if isinstance(failure, UpstreamError):
                # The probe (if it was one) already closed the circuit at the first chunk.
                stream.upstream.verdict(failure)
            call.fail(failure)
            logger.warning("%s stream broke after the first byte: %s", call.provider, failure)
            if pending is not None:
                yield encode_event(pending)
            trailer = stream_trailer()
            if trailer is not None:
                yield trailer
            yield encode_event(openai_error_body(failure))
            return
        end_attempt(stream.attempt_span, "ok", None)
        self._succeeded(call, Target(call.provider, call.model), accumulator.meta)
        usage = accumulator.meta.usage
        if opened.include_usage_chunk:
            if pending is not None:
                yield encode_event(pending)
            yield encode_event(accumulator.usage_chunk())
        elif pending is not None:
            if usage is not None:
                pending["usage"] = usage.as_openai()
            yield encode_event(pending)
        trailer = stream_trailer()
        if trailer is not None:
            yield trailer
        yield DONE_EVENT

    def _start_call(
        self,
        upstream: Upstream,
        target: Target,
        body: JsonObject,
        client: str,
        fallback_from: ProviderName | None,
    ) -> ChatCall:
        return ChatCall(
            self._tracer,
            self._metrics,
            upstream.adapter,
            target.model,
            self._model_label(target.model),
            upstream.breaker.state,
            body,
            capture_content=self._capture_content,
            model_label_of=self._model_label,
            client_label=client,
            fallback_from=fallback_from,
        )

    def _model_label(self, model: str) -> str:
        """A model name as a bounded metric label: itself if configured, else `other`."""
        return model if self._router.is_known(model) else OTHER_MODEL

    def _may_fall_back(
        self, exc: ProxyError, index: int, plan: list[Target], deadline: Deadline
    ) -> bool:
        if index + 1 >= len(plan) or deadline.remaining() <= MIN_ATTEMPT_BUDGET_S:
            return False
        if not isinstance(exc, CircuitOpen | UpstreamError):
            return False
        if isinstance(exc, UpstreamError) and not exc.fallback_eligible:
            return False
        nxt = plan[index + 1]
        logger.warning(
            "%s failed (%s); falling back to %s model %s",
            plan[index].provider,
            exc.error_type,
            nxt.provider,
            nxt.model,
        )
        return True

    def _succeeded(self, call: ChatCall, target: Target, meta: ResponseMeta) -> None:
        cost = None
        if meta.usage is not None:
            cost = self._prices.cost_usd(meta.response_model or target.model, meta.usage)
            if cost is None:
                cost = self._prices.cost_usd(target.model, meta.usage)
        call.succeed(meta, cost)
