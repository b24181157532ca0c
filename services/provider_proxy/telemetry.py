"""The proxy's spans and metrics (DESIGN §6); the names come from semconv and names.py.

Span tree of one request::

    POST /v1/chat/completions        SERVER  (FastAPI instrumentation)
     └── chat {model label}          CLIENT  one per logical call (primary, fallback)
          └── attempt {n}            INTERNAL  one per upstream attempt
               └── POST              CLIENT  (httpx instrumentation)

`exai.provider.retries`, `exai.provider.fallback` and `exai.provider.circuit_state`
go on the request (server) span, where the collector's tail sampling looks; the
`chat` spans carry their own retries and circuit state too.

`exai.provider.requests` counts logical calls by `exai.outcome`: `ok`, `error` (the
provider failed — the only outcome ProviderErrorRatioHigh counts), `cancelled`,
`client_error`, `config_error`, `proxy_error`, `deadline_exceeded` (whose they are:
:mod:`provider_proxy.errors`).

The collector's span-metrics connector turns the span name and `gen_ai.request.model`
into Prometheus labels, so both use the *model label*: the model as configured, or
`other` for any name outside the configured list (`kimi-*` routes any `kimi-…` a
client makes up). The name the client sent is kept in `exai.request.model_raw` — a span
attribute no metric uses — when it differs from the label.

With `EXAI_CAPTURE_CONTENT=true` the `chat` span also carries `gen_ai.input.messages`
and `gen_ai.output.messages` (see :mod:`provider_proxy.content`); never otherwise.

Streamed calls also record the GenAI streaming histograms
`gen_ai.client.operation.time_to_first_chunk` (from the start of the logical call,
retries included, to the first chunk) and `gen_ai.client.operation.time_per_output_chunk`
(one value per later chunk: the gap since the previous one), and put the former on the
`chat` span as `gen_ai.response.time_to_first_chunk`. Chunk times are taken as chunks
arrive but recorded when the call ends, so that they carry the same attributes as
`gen_ai.client.operation.duration`: `gen_ai.response.model` (its bounded label) once
known, `error.type` when the call failed.

Per client, per fallback, per rate limit:

- `exai.provider.tokens` and `exai.provider.cost` carry `exai.client.id`, from the
  gateway's `X-EXAI-Client-ID` header (:class:`ClientLabels`: `unknown` without it,
  `other` for a malformed value or once `MAX_CLIENT_LABELS` ids have been seen);
- `exai.provider.fallbacks` counts each call on a fallback provider by
  `exai.fallback.from`, `exai.fallback.to` and `exai.outcome` (`ok` | `error`; a
  fallback the client walked away from is not counted);
- `exai.provider.ratelimit.remaining` / `.limit` report the provider's last
  `x-ratelimit-{remaining,limit}-{requests,tokens}` headers, by provider and
  `exai.ratelimit.resource`; a provider that never sent them has no series.

The request and fallback counters start at 0 for every configured combination
(:meth:`ProxyMetrics.start_at_zero`), so that `rate()` sees a series' first error.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Container, Iterable, Mapping
from typing import Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv._incubating.metrics.gen_ai_metrics import (
    GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK,
    GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK,
    create_gen_ai_client_operation_duration,
    create_gen_ai_client_token_usage,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from exai_contracts.ids import is_client_id
from exai_telemetry import names
from exai_telemetry.correlation import current_tool_label
from exai_telemetry.redaction import error_status
from provider_proxy.adapters import ProviderAdapter
from provider_proxy.completions import ResponseMeta
from provider_proxy.content import StreamOutput, completion_output, input_messages
from provider_proxy.errors import (
    CircuitOpen,
    ProxyError,
    UpstreamConnectError,
    UpstreamMalformed,
    UpstreamRateLimited,
    UpstreamServerError,
    UpstreamTimeout,
    UpstreamTooLarge,
    UpstreamTruncated,
)
from provider_proxy.types import (
    AttemptOutcome,
    CallOutcome,
    CircuitStateName,
    JsonObject,
    ProviderName,
    RetryReason,
)

CHAT = gen_ai.GenAiOperationNameValues.CHAT.value
CANCELLED = "cancelled"
# Span-only (never a metric attribute): the requested model when it is not its label.
REQUEST_MODEL_RAW = "exai.request.model_raw"

# The GenAI semconv's advice for its client latency histograms (seconds).
GEN_AI_LATENCY_BUCKETS_S = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)

# `exai.client.id` on the token and cost counters: without the header (a direct
# OpenAI-SDK client) `unknown`; a malformed value, or any id after the first
# MAX_CLIENT_LABELS, `other`. The gateway's client ids are a configured, short list.
UNKNOWN_CLIENT = "unknown"
OTHER_CLIENT = "other"
MAX_CLIENT_LABELS = 64

# The provider's failures (`exai.outcome="error"`), by error.type: the series the error
# ratio alert counts, created at 0 for each configured model.
PROVIDER_FAILURE_TYPES = tuple(
    dict.fromkeys(
        error.error_type
        for error in (
            CircuitOpen,
            UpstreamTimeout,
            UpstreamConnectError,
            UpstreamRateLimited,
            UpstreamServerError,
            UpstreamMalformed,
            UpstreamTruncated,
            UpstreamTooLarge,
        )
    )
)

# OpenAI's (and Moonshot's, Zhipu's) rate-limit headers: resource -> (limit, remaining).
RATE_LIMIT_HEADERS: dict[str, tuple[str, str]] = {
    "requests": ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests"),
    "tokens": ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens"),
}

# Request parameters worth a span attribute (never message content).
_REQUEST_PARAMS: dict[str, str] = {
    "max_tokens": gen_ai.GEN_AI_REQUEST_MAX_TOKENS,
    "temperature": gen_ai.GEN_AI_REQUEST_TEMPERATURE,
    "top_p": gen_ai.GEN_AI_REQUEST_TOP_P,
}


class ClientLabels:
    """`exai.client.id` metric values from the `X-EXAI-Client-ID` header, bounded.

    Only the shape of a client id passes (exai_contracts.ids), never one of this
    service's own secrets; after `max_labels` distinct ids every new one is `other`."""

    def __init__(self, max_labels: int = MAX_CLIENT_LABELS, secrets: Container[str] = ()) -> None:
        self._max = max_labels
        self._secrets = secrets
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def label(self, header: str | None) -> str:
        if header is None:
            return UNKNOWN_CLIENT
        if not is_client_id(header) or header in self._secrets:
            return OTHER_CLIENT
        if header in self._seen:
            return header
        with self._lock:
            if len(self._seen) >= self._max:
                return OTHER_CLIENT
            self._seen.add(header)
        return header


def _header_count(value: str | None) -> int | None:
    """A rate-limit header's count (a non-negative number), else None."""
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return int(number) if math.isfinite(number) and number >= 0 else None


class RateLimits:
    """The last rate-limit figures each provider sent, for the two gauges."""

    def __init__(self) -> None:
        # (provider, resource) -> value; written on the event loop, read by the reader.
        self.limit: dict[tuple[ProviderName, str], int] = {}
        self.remaining: dict[tuple[ProviderName, str], int] = {}

    def observe(self, provider: ProviderName, headers: Mapping[str, str]) -> None:
        for resource, (limit_header, remaining_header) in RATE_LIMIT_HEADERS.items():
            limit = _header_count(headers.get(limit_header))
            if limit is not None:
                self.limit[provider, resource] = limit
            remaining = _header_count(headers.get(remaining_header))
            if remaining is not None:
                self.remaining[provider, resource] = remaining

    @staticmethod
    def observations(values: Mapping[tuple[ProviderName, str], int]) -> list[Observation]:
        return [
            Observation(
                value,
                {gen_ai.GEN_AI_PROVIDER_NAME: provider, names.RATELIMIT_RESOURCE: resource},
            )
            for (provider, resource), value in list(values.items())
        ]


class ProxyMetrics:
    def __init__(
        self,
        meter: Meter,
        circuit_states: Callable[[], Mapping[ProviderName, CircuitStateName]],
        spend_budget_usd_per_hour: float | None = None,
    ) -> None:
        self._circuit_states = circuit_states
        self.token_usage = create_gen_ai_client_token_usage(meter)
        self.duration = create_gen_ai_client_operation_duration(meter)
        self.tokens = meter.create_counter(
            names.M_PROVIDER_TOKENS, unit="{token}", description="Tokens by provider and type."
        )
        self.time_to_first_chunk = meter.create_histogram(
            GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Time to receive the first chunk of a streamed completion.",
            explicit_bucket_boundaries_advisory=GEN_AI_LATENCY_BUCKETS_S,
        )
        self.time_per_output_chunk = meter.create_histogram(
            GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK,
            unit="s",
            description="Time between consecutive chunks of a streamed completion.",
            explicit_bucket_boundaries_advisory=GEN_AI_LATENCY_BUCKETS_S,
        )
        # `{USD}`: an annotation, so Prometheus names the counter exai_provider_cost_total.
        self.cost = meter.create_counter(
            names.M_PROVIDER_COST, unit="{USD}", description="Provider cost from the price table."
        )
        self.retries = meter.create_counter(
            names.M_PROVIDER_RETRIES, unit="{retry}", description="Upstream retries by reason."
        )
        self.requests = meter.create_counter(
            names.M_PROVIDER_REQUESTS,
            unit="{request}",
            description="Logical provider calls by outcome.",
        )
        self.fallbacks = meter.create_counter(
            names.M_PROVIDER_FALLBACKS,
            unit="{fallback}",
            description="Calls on a fallback provider by from, to and outcome.",
        )
        self.rate_limits = RateLimits()
        meter.create_observable_gauge(
            names.M_PROVIDER_RATELIMIT_REMAINING,
            callbacks=[lambda options: self.rate_limits.observations(self.rate_limits.remaining)],
            unit="{count}",
            description="Requests or tokens left in the provider's rate-limit window.",
        )
        meter.create_observable_gauge(
            names.M_PROVIDER_RATELIMIT_LIMIT,
            callbacks=[lambda options: self.rate_limits.observations(self.rate_limits.limit)],
            unit="{count}",
            description="The provider's rate limit for requests or tokens per window.",
        )
        meter.create_observable_gauge(
            names.M_PROVIDER_CIRCUIT_STATE,
            callbacks=[self._observe_circuits],
            unit="{state}",
            description="Circuit breaker state: 0 closed, 1 half-open, 2 open.",
        )
        if spend_budget_usd_per_hour is not None:
            # Published, not hard-coded in the rule: the alert compares spend with it.
            budget = Observation(spend_budget_usd_per_hour)
            meter.create_observable_gauge(
                names.M_PROVIDER_COST_BUDGET,
                callbacks=[lambda options: [budget]],
                unit="{USD}",
                description="Provider spend budget per hour (EXAI_SPEND_BUDGET_USD_PER_HOUR).",
            )

    def start_at_zero(
        self,
        models: Iterable[tuple[ProviderName, str]],
        fallbacks: Iterable[tuple[ProviderName, ProviderName]],
    ) -> None:
        """Create the request series for `models` ((provider, model label) pairs:
        `ok` and each provider failure type) and the fallback series, at 0."""
        for provider, model in models:
            labels: dict[str, AttributeValue] = {
                gen_ai.GEN_AI_OPERATION_NAME: CHAT,
                gen_ai.GEN_AI_PROVIDER_NAME: provider,
                gen_ai.GEN_AI_REQUEST_MODEL: model,
            }
            self.requests.add(0, {**labels, names.OUTCOME: "ok"})
            for error_type in PROVIDER_FAILURE_TYPES:
                self.requests.add(0, {**labels, ERROR_TYPE: error_type, names.OUTCOME: "error"})
        for source, target in fallbacks:
            for outcome in ("ok", "error"):
                self.fallbacks.add(0, _fallback_labels(source, target, outcome))

    def _observe_circuits(self, options: CallbackOptions) -> Iterable[Observation]:
        for provider, state in self._circuit_states().items():
            yield Observation(
                names.CIRCUIT_STATE_VALUES[state], {gen_ai.GEN_AI_PROVIDER_NAME: provider}
            )


def _fallback_labels(
    source: ProviderName, target: ProviderName, outcome: str
) -> dict[str, AttributeValue]:
    return {names.FALLBACK_FROM: source, names.FALLBACK_TO: target, names.OUTCOME: outcome}


class ChatCall:
    """One logical call to one provider: its `chat {model label}` span and its metrics.

    Started in the request's context; finished exactly once by :meth:`succeed`,
    :meth:`fail` or :meth:`cancel` — possibly later, from the streaming response.
    """

    def __init__(
        self,
        tracer: trace.Tracer,
        metrics: ProxyMetrics,
        adapter: ProviderAdapter,
        model: str,
        model_label: str,
        circuit_state: CircuitStateName,
        body: JsonObject,
        *,
        capture_content: bool = False,
        model_label_of: Callable[[str], str] | None = None,
        client_label: str = UNKNOWN_CLIENT,
        fallback_from: ProviderName | None = None,
    ) -> None:
        """`model` is what is asked of the provider; `model_label` its bounded name
        for span names and metric attributes (the model if configured, else `other`).
        `model_label_of` bounds the provider's response model the same way; without it
        the GenAI histograms carry no `gen_ai.response.model`. `client_label` is the
        calling client's bounded id (:class:`ClientLabels`); `fallback_from` the
        provider that failed before this call, when it is a fallback."""
        self.provider = adapter.name
        self._client_label = client_label
        self._fallback_from = fallback_from
        self._model_label_of = model_label_of
        self._response_model_label: str | None = None
        self.model = model
        self._metrics = metrics
        self._tracer = tracer
        self._labels: dict[str, AttributeValue] = {
            gen_ai.GEN_AI_OPERATION_NAME: CHAT,
            gen_ai.GEN_AI_PROVIDER_NAME: adapter.name,
            gen_ai.GEN_AI_REQUEST_MODEL: model_label,
        }
        # Read now, in the request's context (a streamed call finishes later): which
        # gateway tool spent these tokens, for tokens and cost by tool.
        self._tool_label = current_tool_label()
        attributes: dict[str, AttributeValue] = {
            gen_ai.GEN_AI_OPERATION_NAME: CHAT,
            gen_ai.GEN_AI_PROVIDER_NAME: adapter.name,
            gen_ai.GEN_AI_REQUEST_MODEL: model_label,
            gen_ai.GEN_AI_REQUEST_STREAM: bool(body.get("stream")),
            SERVER_ADDRESS: adapter.endpoint.address,
            SERVER_PORT: adapter.endpoint.port,
            names.CIRCUIT_STATE: circuit_state,
        }
        for key, attribute in _REQUEST_PARAMS.items():
            value = body.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                attributes[attribute] = value
        if model != model_label:
            attributes[REQUEST_MODEL_RAW] = model
        # Content only on opt-in (the exporter drops it again when capture is off).
        self._output: StreamOutput | None = None
        if capture_content:
            attributes[gen_ai.GEN_AI_INPUT_MESSAGES] = input_messages(body.get("messages"))
            self._output = StreamOutput()
        self._completion: JsonObject | None = None
        self.span = tracer.start_span(
            f"{CHAT} {model_label}", kind=SpanKind.CLIENT, attributes=attributes
        )
        self.context: Context = trace.set_span_in_context(self.span, otel_context.get_current())
        self.retries = 0
        self._started = time.perf_counter()
        self._finished = False
        # Streaming: when the first chunk came, and the gaps between later ones.
        self._first_chunk_s: float | None = None
        self._last_chunk_at = 0.0
        self._chunk_gaps_s: list[float] = []

    def start_attempt(self, number: int) -> Span:
        return self._tracer.start_span(
            f"attempt {number}",
            context=self.context,
            kind=SpanKind.INTERNAL,
            attributes={names.PROVIDER_ATTEMPT: number},
        )

    def observe_rate_limits(self, headers: Mapping[str, str]) -> None:
        """The provider's response headers: its rate-limit figures, when it sends them."""
        self._metrics.rate_limits.observe(self.provider, headers)

    def observe_completion(self, completion: JsonObject) -> None:
        """The (non-streamed) completion, for `gen_ai.output.messages` if captured."""
        if self._output is not None:
            self._completion = completion

    def chunk_arrived(self) -> None:
        """A streamed chunk has just come from the provider (called as it arrives)."""
        now = time.perf_counter()
        if self._first_chunk_s is None:
            self._first_chunk_s = now - self._started
            if self.span.is_recording():
                self.span.set_attribute(
                    gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, self._first_chunk_s
                )
        else:
            self._chunk_gaps_s.append(now - self._last_chunk_at)
        self._last_chunk_at = now

    def observe_chunk(self, chunk: JsonObject) -> None:
        """One streamed chunk, for `gen_ai.output.messages` if captured."""
        if self._output is not None:
            self._output.absorb(chunk)

    def note_retry(self, reason: RetryReason) -> None:
        self.retries += 1
        self._metrics.retries.add(1, {**self._labels, names.RETRY_REASON: reason})

    def succeed(self, meta: ResponseMeta, cost_usd: float | None) -> None:
        if self._finished:
            return
        span = self.span
        usage = meta.usage
        if meta.response_model and self._model_label_of is not None:
            self._response_model_label = self._model_label_of(meta.response_model)
        if span.is_recording():
            # One set_attributes call: the span's lock and checks once, not per attribute.
            result: dict[str, AttributeValue] = {names.PROVIDER_RETRIES: self.retries}
            if meta.response_model:
                result[gen_ai.GEN_AI_RESPONSE_MODEL] = meta.response_model
            if meta.response_id:
                result[gen_ai.GEN_AI_RESPONSE_ID] = meta.response_id
            result[gen_ai.GEN_AI_RESPONSE_FINISH_REASONS] = meta.finish_reasons
            if usage is not None:
                result[gen_ai.GEN_AI_USAGE_INPUT_TOKENS] = usage.input_tokens
                result[gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
                result[gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage.cached_tokens
                result[names.CACHED_TOKENS] = usage.cached_tokens
            if cost_usd is not None:
                result[names.COST_USD] = cost_usd
            if self._output is not None:
                result[gen_ai.GEN_AI_OUTPUT_MESSAGES] = (
                    completion_output(self._completion)
                    if self._completion is not None
                    else self._output.as_json()
                )
            span.set_attributes(result)
        self._end("ok", None)
        labels = self._labels
        if usage is not None:
            for token_type, count in (
                ("input", usage.input_tokens),
                ("output", usage.output_tokens),
            ):
                self._metrics.token_usage.record(
                    count, {**labels, gen_ai.GEN_AI_TOKEN_TYPE: token_type}
                )
            for token_type, count in (
                ("input", usage.input_tokens),
                ("output", usage.output_tokens),
                ("cached", usage.cached_tokens),
            ):
                self._metrics.tokens.add(
                    count,
                    {
                        **labels,
                        names.TOOL: self._tool_label,
                        names.CLIENT_ID: self._client_label,
                        names.TOKEN_TYPE: token_type,
                    },
                )
        if cost_usd is not None:
            self._metrics.cost.add(
                cost_usd,
                {**labels, names.TOOL: self._tool_label, names.CLIENT_ID: self._client_label},
            )

    def fail(self, exc: ProxyError) -> None:
        """The call failed; `exc.call_outcome` says whose failure it was."""
        self._fail(exc.error_type, str(exc), exc.call_outcome)

    def cancel(self) -> None:
        self._fail(CANCELLED, "the client went away", "cancelled")

    def _fail(self, error_type: str, message: str, outcome: CallOutcome) -> None:
        if self._finished:
            return
        if self.span.is_recording():
            self.span.set_attribute(names.PROVIDER_RETRIES, self.retries)
            self.span.set_attribute(ERROR_TYPE, error_type)
            # Provider error text can quote what the client or upstream sent.
            self.span.set_status(error_status(message))
        self._end(outcome, error_type)

    def _end(self, outcome: CallOutcome, error_type: str | None) -> None:
        self._finished = True
        self.span.end()
        labels = dict(self._labels)
        if error_type is not None:
            labels[ERROR_TYPE] = error_type
        latency_labels = dict(labels)
        if self._response_model_label is not None:
            latency_labels[gen_ai.GEN_AI_RESPONSE_MODEL] = self._response_model_label
        metrics = self._metrics
        metrics.duration.record(time.perf_counter() - self._started, latency_labels)
        if self._first_chunk_s is not None:
            metrics.time_to_first_chunk.record(self._first_chunk_s, latency_labels)
            for gap in self._chunk_gaps_s:
                metrics.time_per_output_chunk.record(gap, latency_labels)
            self._chunk_gaps_s.clear()
        metrics.requests.add(1, {**labels, names.OUTCOME: outcome})
        if self._fallback_from is not None and outcome != CANCELLED:
            result = "ok" if outcome == "ok" else "error"
            metrics.fallbacks.add(1, _fallback_labels(self._fallback_from, self.provider, result))


def end_attempt(
    span: Span, outcome: AttemptOutcome | Literal["cancelled", "error"], error: ProxyError | None
) -> None:
    """`outcome` beyond the provider's answers: `cancelled` (the client left) and
    `error` (a bug in the proxy)."""
    if span.is_recording():
        span.set_attribute(names.ATTEMPT_OUTCOME, outcome)
        if error is not None:
            span.set_attribute(ERROR_TYPE, error.error_type)
            span.set_status(error_status(str(error)))
        elif outcome == CANCELLED:
            span.set_attribute(ERROR_TYPE, CANCELLED)
        elif outcome == "error":
            span.set_attribute(ERROR_TYPE, ProxyError.error_type)
            span.set_status(Status(StatusCode.ERROR, "internal error"))
    span.end()


class RequestSummary:
    """What the request span says about resilience; set at once, so even a refused or
    cancelled request shows `retries=0`, `fallback=false`."""

    def __init__(self, circuit_state: CircuitStateName) -> None:
        self.span = trace.get_current_span()
        self.retries = 0
        self.fallback = False
        if self.span.is_recording():
            self.span.set_attributes(
                {
                    names.CIRCUIT_STATE: circuit_state,
                    names.PROVIDER_RETRIES: 0,
                    names.PROVIDER_FALLBACK: False,
                }
            )

    def add(self, call: ChatCall) -> None:
        if call.retries:  # the span already says what nothing changes
            self.retries += call.retries
            self.update()

    def mark_fallback(self) -> None:
        self.fallback = True
        self.update()

    def update(self) -> None:
        if self.span.is_recording():
            self.span.set_attributes(
                {names.PROVIDER_RETRIES: self.retries, names.PROVIDER_FALLBACK: self.fallback}
            )
