"""The few attributes worth a glance on each span's line of the waterfall.

HTTP method/route/status, DB system and operation, GenAI provider/model/tokens, and
EXAI's own: tool, attempt, retries, fallback, circuit state, outcome. Names come from
the semconv constants (both the stable HTTP/DB names and the older ones, so traces
from before ``OTEL_SEMCONV_STABILITY_OPT_IN`` still read) and from exai_telemetry.names
(repeated here as strings: that package imports the OpenTelemetry SDK).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from opentelemetry.semconv._incubating.attributes import db_attributes as db_old
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes import (
    db_attributes,
    error_attributes,
    exception_attributes,
    http_attributes,
    url_attributes,
)

from exai_cli.types import Attributes, AttributeValue, Span

# Pre-stable HTTP names (semconv < 1.21), as instrumentations emit them without opt-in.
_OLD_HTTP_METHOD = "http.method"
_OLD_HTTP_STATUS = "http.status_code"
_OLD_HTTP_URL = "http.url"
# exai_telemetry.names
TOOL = "exai.tool"
OUTCOME = "exai.outcome"
ATTEMPT = "exai.provider.attempt"
ATTEMPT_OUTCOME = "exai.provider.attempt.outcome"
RETRIES = "exai.provider.retries"
FALLBACK = "exai.provider.fallback"
CIRCUIT_STATE = "exai.provider.circuit_state"
RETRY_REASON = "exai.retry.reason"
CACHE_RESULT = "exai.cache.result"
COST_USD = "exai.cost.usd"
SIMULATOR_FAULT = "exai.simulator.fault"


@dataclass(frozen=True)
class Detail:
    text: str
    alarm: bool = False  # worth the reader's eye: a retry, a fallback, an open circuit


def _first(attributes: Attributes, *keys: str) -> AttributeValue:
    for key in keys:
        value = attributes.get(key)
        if value is not None and value != "":
            return value
    return None


def _http(span: Span) -> list[Detail]:
    a = span.attributes
    method = _first(a, http_attributes.HTTP_REQUEST_METHOD, _OLD_HTTP_METHOD)
    status = _first(a, http_attributes.HTTP_RESPONSE_STATUS_CODE, _OLD_HTTP_STATUS)
    if method is None and status is None:
        return []
    target = _first(a, http_attributes.HTTP_ROUTE)
    if target is None and (url := _first(a, url_attributes.URL_FULL, _OLD_HTTP_URL)):
        # Host and path only: a query string may carry what should not be on a screen.
        parts = urlsplit(str(url))
        target = f"{parts.netloc.rpartition('@')[2]}{parts.path}"
    words = [str(w) for w in (method, target) if w is not None and str(w) not in span.name]
    if status is not None:
        words.append(str(status))
    failed = isinstance(status, int) and status >= 500
    return [Detail(" ".join(words), alarm=failed)] if words else []


def _db(span: Span) -> list[Detail]:
    a = span.attributes
    system = _first(a, db_attributes.DB_SYSTEM_NAME, db_old.DB_SYSTEM)
    if system is None:
        return []
    operation = _first(a, db_attributes.DB_OPERATION_NAME, db_old.DB_OPERATION)
    collection = _first(a, db_attributes.DB_COLLECTION_NAME, db_old.DB_SQL_TABLE)
    words = [str(w) for w in (system, operation, collection) if w is not None]
    return [Detail(" ".join(words))]


def _or_unknown(value: AttributeValue) -> str:
    return "?" if value is None else str(value)


def _gen_ai(span: Span) -> list[Detail]:
    a = span.attributes
    provider = _first(a, gen_ai.GEN_AI_PROVIDER_NAME, gen_ai.GEN_AI_SYSTEM)
    model = _first(a, gen_ai.GEN_AI_REQUEST_MODEL)
    if provider is None and model is None:
        return []
    words = [str(w) for w in (provider, model) if w is not None]
    response_model = _first(a, gen_ai.GEN_AI_RESPONSE_MODEL)
    if response_model is not None and response_model != model:
        words.append(f"(answered by {response_model})")
    tokens_in = _first(a, gen_ai.GEN_AI_USAGE_INPUT_TOKENS)
    tokens_out = _first(a, gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS)
    if tokens_in is not None or tokens_out is not None:
        words.append(f"tokens in={_or_unknown(tokens_in)} out={_or_unknown(tokens_out)}")
    cost = _first(a, COST_USD)
    if isinstance(cost, int | float) and cost > 0:
        words.append(f"${cost:.6f}".rstrip("0"))
    return [Detail(" ".join(words))]


def _exai(span: Span) -> list[Detail]:
    a = span.attributes
    details = []
    if (tool := a.get(TOOL)) is not None and str(tool) not in span.name:
        details.append(Detail(f"tool={tool}"))
    if (attempt := a.get(ATTEMPT)) is not None:
        outcome = a.get(ATTEMPT_OUTCOME)
        reason = a.get(RETRY_REASON)
        text = f"attempt={attempt}" + (f" {outcome}" if outcome else "")
        details.append(
            Detail(text + (f" ({reason})" if reason else ""), alarm=outcome not in (None, "ok"))
        )
    elif (reason := a.get(RETRY_REASON)) is not None:
        details.append(Detail(f"retry={reason}", alarm=True))
    retries = a.get(RETRIES)
    if isinstance(retries, int) and retries > 0:
        details.append(Detail(f"retries={retries}", alarm=True))
    if a.get(FALLBACK) is True:
        details.append(Detail("fallback", alarm=True))
    circuit = a.get(CIRCUIT_STATE)
    if circuit is not None and circuit != "closed":
        details.append(Detail(f"circuit={circuit}", alarm=True))
    if (cache := a.get(CACHE_RESULT)) is not None:
        details.append(Detail(f"cache={cache}", alarm=cache == "error"))
    if (fault := a.get(SIMULATOR_FAULT)) is not None:
        details.append(Detail(f"fault={fault}", alarm=True))
    if (outcome := a.get(OUTCOME)) is not None:
        details.append(Detail(f"outcome={outcome}", alarm=outcome not in ("ok", "client_error")))
    status = _first(a, http_attributes.HTTP_RESPONSE_STATUS_CODE, _OLD_HTTP_STATUS)
    error_type = a.get(error_attributes.ERROR_TYPE)
    # HTTP instrumentations set error.type to the status code, already shown.
    if span.is_error and error_type is not None and str(error_type) != str(status):
        details.append(Detail(f"error.type={error_type}", alarm=True))
    return details


def details(span: Span) -> list[Detail]:
    """Key attributes of one span, in reading order."""
    return [*_http(span), *_db(span), *_gen_ai(span), *_exai(span)]


def error_lines(span: Span) -> list[str]:
    """Why a span failed: its status message and each recorded exception (no traceback)."""
    lines = [span.status_message] if span.status_message else []
    for event in span.events:
        if event.name != "exception":
            continue
        kind = event.attributes.get(exception_attributes.EXCEPTION_TYPE)
        message = event.attributes.get(exception_attributes.EXCEPTION_MESSAGE)
        text = ": ".join(str(p) for p in (kind, message) if p)
        if text and text not in lines and not any(text in line for line in lines):
            lines.append(text)
    return lines
