"""Secrets and content never leave the process.

Two layers, both here:

- values: every secret a service is configured with is registered in a
  :class:`SecretRegistry`; any occurrence in an exported span or a log line is replaced;
- keys: attributes whose name says credential (`authorization`, `api_key`, `token`, …)
  are replaced whatever their value, and GenAI content attributes are dropped unless
  `EXAI_CAPTURE_CONTENT=true`.

The collector redacts again as a second line of defence.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.types import AttributeValue

REDACTED = "[REDACTED]"

SENSITIVE_KEY = re.compile(
    r"(authorization|api[_.-]?key|secret|password|passwd|cookie|(^|[._-])token$|bearer)",
    re.IGNORECASE,
)
SENSITIVE_QUERY_PARAMS = frozenset({"token", "access_token", "api_key", "apikey", "key", "sig"})
CONTENT_ATTRIBUTES = frozenset(
    {
        "gen_ai.prompt",
        "gen_ai.completion",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "exai.prompt",
        "exai.completion",
    }
)
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
# A sensitive parameter anywhere in free text (a request line in an exception message, a
# URL in a log line): after any separator a query or fragment can have, up to the next.
_QUERY_SECRET = re.compile(
    r"(?i)([?&;#](?:"
    + "|".join(sorted(map(re.escape, SENSITIVE_QUERY_PARAMS), key=len, reverse=True))
    + r")=)[^&;#\s\"']+"
)
# Between the parameters of a query or fragment. A second `?` separates too: servers
# and proxies differ on it, so redaction must not bet on one reading.
_QUERY_SEPARATOR = re.compile(r"([&;?])")
_MIN_SECRET_LENGTH = 6


class SecretRegistry:
    """The secret values this process knows; anything matching one is scrubbed."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        # Very short values would scrub innocent text and are not credentials anyway.
        if secret and len(secret) >= _MIN_SECRET_LENGTH:
            self._secrets.add(secret)

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and any(s in value for s in self._secrets)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        # Most attribute values are short identifiers: skip the regexes unless the text
        # could hold a bearer token or a query parameter (this runs for every string
        # attribute of every exported span).
        if " " in text:
            text = _BEARER.sub(r"\1 " + REDACTED, text)
        if "=" in text:
            text = _QUERY_SECRET.sub(r"\1" + REDACTED, text)
        return text


def redact_query(query: str) -> str:
    """`query` (or a fragment) with the value of every sensitive parameter replaced and
    everything else exactly as it was (no re-encoding)."""
    parts = _QUERY_SEPARATOR.split(query)
    for index in range(0, len(parts), 2):  # odd indexes hold the separators
        key, eq, _ = parts[index].partition("=")
        if eq and unquote_plus(key).strip().lower() in SENSITIVE_QUERY_PARAMS:
            parts[index] = f"{key}={REDACTED}"
    return "".join(parts)


def redact_url(url: str) -> str:
    """`url` without credentials: no userinfo, sensitive query and fragment values
    replaced."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit(
        (parts.scheme, netloc, parts.path, redact_query(parts.query), redact_query(parts.fragment))
    )


def redact_path(path: str) -> str:
    """A request target (`/path?query`) with sensitive query values replaced; the rest
    (a second `?`, `;` separators, a fragment, percent-escapes) as it was."""
    target, hash_, fragment = path.partition("#")
    route, question, query = target.partition("?")
    if not question and not hash_:
        return path
    return f"{route}{question}{redact_query(query)}{hash_}{redact_query(fragment)}"


# Span status descriptions: enough to say what failed, never a whole upstream body.
MAX_STATUS_DESCRIPTION = 1024
_PATTERNS_ONLY = SecretRegistry()


def error_status(description: str, registry: SecretRegistry | None = None) -> Status:
    """An ERROR status whose description is safe to export: bearer credentials and
    sensitive query parameters (and, given a registry, configured secrets) replaced,
    length bounded. For span status text built from exception messages; the exporter
    scrubs every status again with the service's registry."""
    scrubbed = (registry or _PATTERNS_ONLY).scrub(description)
    return Status(StatusCode.ERROR, scrubbed[:MAX_STATUS_DESCRIPTION])


def _redact_value(value: AttributeValue, registry: SecretRegistry) -> AttributeValue:
    if isinstance(value, str):
        return registry.scrub(value)
    if isinstance(value, Sequence) and value and isinstance(value[0], str):
        return [registry.scrub(str(v)) for v in value]
    return value


def redact_attributes(
    attributes: Mapping[str, AttributeValue] | None,
    registry: SecretRegistry,
    *,
    capture_content: bool,
) -> dict[str, AttributeValue] | None:
    """Redacted copy of `attributes`, or None if nothing needed changing."""
    if not attributes:
        return None
    changed = False
    result: dict[str, AttributeValue] = {}
    for key, value in attributes.items():
        action = _key_action(key)
        if action is _KeyAction.CONTENT and not capture_content:
            changed = True
            continue
        if action is _KeyAction.REDACT:
            new_value: AttributeValue = REDACTED
        elif isinstance(value, bool | int | float):
            new_value = value  # nothing to scrub in a number
        else:
            new_value = _redact_value(value, registry)
        changed = changed or new_value != value
        result[key] = new_value
    return result if changed else None


class _KeyAction(enum.Enum):
    SCRUB = "scrub"  # keep the attribute, scrub its value
    REDACT = "redact"  # a credential's name: the value goes whatever it is
    CONTENT = "content"  # prompt or completion text: dropped unless captured


@functools.lru_cache(maxsize=4096)
def _key_action(key: str) -> _KeyAction:
    """What an attribute's name alone decides; attribute names are few (they come from
    code, not from requests), so each is matched once per process, not once per span."""
    if key in CONTENT_ATTRIBUTES:
        return _KeyAction.CONTENT
    if SENSITIVE_KEY.search(key) and key != "exai.correlation_id":
        return _KeyAction.REDACT
    return _KeyAction.SCRUB


class RedactingSpanExporter(SpanExporter):
    """Wraps an exporter; spans leave with credentials and (by default) content removed."""

    def __init__(
        self, inner: SpanExporter, registry: SecretRegistry, *, capture_content: bool = False
    ) -> None:
        self._inner = inner
        self._registry = registry
        self._capture_content = capture_content

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export([self._redact(span) for span in spans])

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def _redact(self, span: ReadableSpan) -> ReadableSpan:
        attributes = redact_attributes(
            span.attributes, self._registry, capture_content=self._capture_content
        )
        events, events_changed = self._redact_events(span.events)
        status = self._redact_status(span.status)
        if attributes is None and not events_changed and status is span.status:
            return span
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=attributes if attributes is not None else span.attributes,
            events=events,
            links=span.links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def _redact_status(self, status: Status) -> Status:
        """The SDK writes `ExcType: message` into the status of a span an exception
        left; our code writes provider error text. Both may quote a credential."""
        description = status.description
        if not description:
            return status
        scrubbed = self._registry.scrub(description)
        if scrubbed == description:
            return status
        return Status(status.status_code, scrubbed)

    def _redact_events(self, events: Sequence[Event]) -> tuple[Sequence[Event], bool]:
        changed = False
        result: list[Event] = []
        for event in events:
            attributes = redact_attributes(
                event.attributes, self._registry, capture_content=self._capture_content
            )
            if attributes is None:
                result.append(event)
                continue
            changed = True
            result.append(Event(event.name, attributes, event.timestamp))
        return result, changed


def scrub_any(value: Any, registry: SecretRegistry) -> Any:
    """Scrub strings nested in log arguments and log fields (tuples, lists, dicts)
    without changing other types."""
    if isinstance(value, str):
        return registry.scrub(value)
    if isinstance(value, tuple):
        return tuple(scrub_any(v, registry) for v in value)
    if isinstance(value, list):
        return [scrub_any(v, registry) for v in value]
    if isinstance(value, dict):
        return {k: scrub_any(v, registry) for k, v in value.items()}
    return value
