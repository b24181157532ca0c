"""Kimi and GLM adapters: where each provider lives and how its API differs from OpenAI's.

Both adapters always run; only their base URLs change. Without an API key a provider
points at the llm-simulator with a placeholder key (the simulator wants *a* bearer
token, as the real APIs do), so the same code path is exercised in demos and tests.

Trace context (`traceparent`, `baggage`) goes only to upstreams that are ours: the
llm-simulator's host (`EXAI_SIMULATOR_URL`) or a loopback address. Any other host — the
real Kimi and GLM APIs above all — gets neither (see :attr:`Endpoint.propagate_context`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import urlsplit

from pydantic import SecretStr

from provider_proxy.settings import ProxySettings
from provider_proxy.types import JsonObject, ProviderName

PLACEHOLDER_KEY = "sk-exai-simulator-placeholder"
CHAT_PATH = "/chat/completions"


@dataclass(frozen=True)
class Timeouts:
    connect_s: float
    read_s: float
    deadline_s: float


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    api_key: SecretStr
    simulated: bool  # no API key configured: placeholder key
    # Send `traceparent` and `baggage` (our correlation ID) with each request? Only to
    # our own services; a third-party API learns nothing of our traces (W3C trace
    # context to third parties is optional, and baggage is internal data).
    propagate_context: bool = False

    @property
    def address(self) -> str:
        return urlsplit(self.base_url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.base_url)
        return parts.port or (443 if parts.scheme == "https" else 80)


class ProviderAdapter:
    """OpenAI-shaped request in, the provider's dialect out."""

    name: ClassVar[ProviderName]
    real_base_url: ClassVar[str]
    simulator_path: ClassVar[str]

    def __init__(self, endpoint: Endpoint, timeouts: Timeouts) -> None:
        self.endpoint = endpoint
        self.timeouts = timeouts

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.endpoint.api_key.get_secret_value()}"}

    def prepare(self, body: JsonObject, model: str) -> JsonObject:
        """The upstream request body for `body` (an OpenAI request) sent to `model`.

        `body` is left as it is (a fallback prepares it again). Only what is changed is
        copied: a deep copy would recurse through whatever the client nested.
        """
        payload = dict(body)
        payload["model"] = model
        # Neither API knows `max_completion_tokens` (OpenAI's newer name).
        if "max_completion_tokens" in payload:
            limit = payload.pop("max_completion_tokens")
            payload.setdefault("max_tokens", limit)
        # Nor the `developer` role, which OpenAI introduced for system prompts.
        messages = payload.get("messages")
        if isinstance(messages, list):
            payload["messages"] = [
                {**message, "role": "system"}
                if isinstance(message, dict) and message.get("role") == "developer"
                else message
                for message in messages
            ]
        self._quirks(payload)
        return payload

    def _quirks(self, payload: JsonObject) -> None:
        return None


class KimiAdapter(ProviderAdapter):
    name = "kimi"
    real_base_url = "https://api.moonshot.ai/v1"
    simulator_path = "/v1"

    def _quirks(self, payload: JsonObject) -> None:
        # Kimi accepts temperature in [0, 1]; OpenAI clients may send up to 2.
        temperature = payload.get("temperature")
        if isinstance(temperature, int | float):
            payload["temperature"] = min(max(float(temperature), 0.0), 1.0)
        if payload.get("stream"):
            # The proxy accounts every call, so it always asks for streamed usage.
            options = payload.get("stream_options")
            payload["stream_options"] = {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            }


class GlmAdapter(ProviderAdapter):
    name = "glm"
    real_base_url = "https://open.bigmodel.cn/api/paas/v4"
    simulator_path = "/api/paas/v4"
    MIN_TEMPERATURE: ClassVar[float] = 0.01

    def _quirks(self, payload: JsonObject) -> None:
        # GLM wants temperature in (0, 1] and rejects `stream_options` (it reports
        # usage in the last chunk anyway).
        temperature = payload.get("temperature")
        if isinstance(temperature, int | float):
            payload["temperature"] = min(max(float(temperature), self.MIN_TEMPERATURE), 1.0)
        payload.pop("stream_options", None)


ADAPTERS: dict[ProviderName, type[ProviderAdapter]] = {"kimi": KimiAdapter, "glm": GlmAdapter}


def build_adapters(settings: ProxySettings) -> dict[ProviderName, ProviderAdapter]:
    return {name: _build(cls, settings) for name, cls in ADAPTERS.items()}


def _build(cls: type[ProviderAdapter], settings: ProxySettings) -> ProviderAdapter:
    name = cls.name
    key: SecretStr | None = getattr(settings, f"{name}_api_key")
    base_url: str | None = getattr(settings, f"{name}_base_url")
    if base_url is None:
        base_url = (
            cls.real_base_url if key is not None else settings.simulator_url + cls.simulator_path
        )
    endpoint = Endpoint(
        base_url=base_url,
        api_key=key if key is not None else SecretStr(PLACEHOLDER_KEY),
        simulated=key is None,
        propagate_context=is_internal_url(base_url, settings.simulator_url),
    )
    timeouts = Timeouts(
        connect_s=getattr(settings, f"{name}_connect_timeout_s"),
        read_s=getattr(settings, f"{name}_read_timeout_s"),
        deadline_s=getattr(settings, f"{name}_deadline_s"),
    )
    return cls(endpoint, timeouts)


def is_internal_url(url: str, simulator_url: str) -> bool:
    """Is `url` one of ours: on the llm-simulator's host, or on loopback (this machine)?

    Whether a key is configured does not matter: tests and demos point keyed providers
    at a simulator, and a keyless provider may be pointed anywhere.
    """
    host = (urlsplit(url).hostname or "").lower()
    if not host:
        return False
    if host == (urlsplit(simulator_url).hostname or "").lower():
        return True
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def startup_note(adapter: ProviderAdapter) -> str | None:
    """The one start-up log line for a provider without an API key."""
    if not adapter.endpoint.simulated:
        return None
    env = adapter.name.upper()
    return (
        f"{adapter.name}: no {env}_API_KEY set; using the llm-simulator at "
        f"{adapter.endpoint.base_url} with a placeholder key"
    )
