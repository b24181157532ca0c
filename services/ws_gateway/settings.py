"""`GatewaySettings`: everything the gateway reads from the environment (DESIGN §2)."""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from exai_telemetry import internal_auth
from exai_telemetry.correlation import GATEWAY_TOOLS
from exai_telemetry.settings import ServiceSettings
from ws_gateway.auth import DEFAULT_CLIENT_ID, ClientTokens, parse_token_map, read_token_file

# Values people paste from examples; refused outside development. Compared case- and
# punctuation-blind; the markers also catch them repeated or padded to the minimum length.
PLACEHOLDER_TOKENS = frozenset(
    {"changeme", "change-me", "change_me", "secret", "token", "password", "placeholder", "test"}
)
PLACEHOLDER_MARKERS = ("changeme", "placeholder", "replaceme", "yourtoken", "example")
# In every environment: a shorter token is weak, and the log/span secret scrubber
# ignores values under 6 characters.
MIN_TOKEN_LENGTH = 16
# History budgets in characters (history + prompt) by model-name prefix. About one
# character per token at worst (CJK), with room left for the answer: Kimi K2 has a
# 256K-token context, GLM-4.5 128K, moonshot-v1-* what their names say.
DEFAULT_HISTORY_BUDGETS = {
    "kimi-": 200_000,
    "moonshot-v1-8k": 6_000,
    "moonshot-v1-32k": 24_000,
    "moonshot-v1-128k": 100_000,
    "glm-": 100_000,
}
# From the environment as `prefix=chars,prefix=chars` (replacing the defaults).
PrefixBudgets = Annotated[dict[str, Annotated[int, Field(ge=0)]], NoDecode]
# Tool → seconds, from a JSON object in the environment ({"chat": 8, "consensus": 2}).
ToolSeconds = Annotated[dict[str, float], NoDecode]


def _token_map_from_text(value: Any) -> Any:
    if isinstance(value, str):
        return parse_token_map(value) if value.strip() else {}
    return value


def _token_map_from_file(value: Any) -> Any:
    if isinstance(value, str):  # a path; blank (compose's `${VAR:-}`) is unset
        return read_token_file(value) if value.strip() else {}
    return value


# Client id → its tokens (ws_gateway.auth): EXAI_WS_TOKENS (a JSON object) and
# EXAI_WS_TOKENS_FILE (a path to one). The canary reads the same two variables.
_Tokens = dict[str, list[SecretStr]]
TokenMapText = Annotated[_Tokens, NoDecode, BeforeValidator(_token_map_from_text)]
TokenMapFile = Annotated[_Tokens, NoDecode, BeforeValidator(_token_map_from_file)]


def _fold(value: str) -> str:
    return re.sub(r"[^a-z0-9]", "", value.lower())


def is_placeholder(token: str) -> bool:
    folded = _fold(token)
    return folded in {_fold(p) for p in PLACEHOLDER_TOKENS} or any(
        marker in folded for marker in PLACEHOLDER_MARKERS
    )


def check_client_token(token: str, environment: str) -> None:
    """ValueError (never quoting the token) unless it may be a client token."""
    if not token.strip():
        raise ValueError("must not be empty")
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters long")
    if environment != "development" and is_placeholder(token):
        raise ValueError("a placeholder is allowed only when EXAI_ENVIRONMENT=development")


class GatewaySettings(ServiceSettings):
    # Client tokens (ws_gateway.auth): EXAI_WS_TOKEN is client `default`; the map and
    # the file (a JSON object {"client-id": "token" | ["token", …]}) name more clients.
    # At least one is required; a token belongs to one client only.
    ws_tokens_file: TokenMapFile = Field(
        default_factory=dict, validation_alias="EXAI_WS_TOKENS_FILE"
    )
    ws_tokens: TokenMapText = Field(default_factory=dict, validation_alias="EXAI_WS_TOKENS")
    ws_token: SecretStr | None = Field(
        default=None, validation_alias="EXAI_WS_TOKEN", validate_default=True
    )
    port: int = Field(default=8079, ge=0, le=65535, validation_alias="EXAI_WS_PORT")
    provider_url: str = Field(default="http://127.0.0.1:8090", validation_alias="EXAI_PROVIDER_URL")
    storage_url: str = Field(default="http://127.0.0.1:8091", validation_alias="EXAI_STORAGE_URL")

    # Sent as `Authorization: Bearer <token>` to provider-proxy and storage-adapter
    # (exai_telemetry.internal_auth); each `_file` field holds the token read from the
    # variable's `_FILE` file.
    provider_token_file: SecretStr | None = Field(
        default=None, validation_alias="EXAI_PROVIDER_TOKEN_FILE"
    )
    provider_token: SecretStr | None = Field(
        default=None, validation_alias="EXAI_PROVIDER_TOKEN", validate_default=True
    )
    storage_token_file: SecretStr | None = Field(
        default=None, validation_alias="EXAI_STORAGE_TOKEN_FILE"
    )
    storage_token: SecretStr | None = Field(
        default=None, validation_alias="EXAI_STORAGE_TOKEN", validate_default=True
    )

    hello_timeout_s: float = Field(default=15.0, gt=0, validation_alias="EXAI_HELLO_TIMEOUT_S")
    call_timeout_s: float = Field(default=120.0, gt=0, validation_alias="EXAI_CALL_TIMEOUT_S")
    storage_timeout_s: float = Field(default=5.0, gt=0, validation_alias="EXAI_STORAGE_TIMEOUT_S")
    max_frame_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, validation_alias="EXAI_MAX_FRAME_BYTES"
    )
    max_inflight_per_session: int = Field(
        default=8, ge=1, validation_alias="EXAI_MAX_INFLIGHT_PER_SESSION"
    )
    max_inflight_global: int = Field(default=64, ge=1, validation_alias="EXAI_MAX_INFLIGHT_GLOBAL")
    max_connections: int = Field(default=256, ge=1, validation_alias="EXAI_MAX_CONNECTIONS")
    # Of those, how many may be open without having authenticated (a native socket
    # before its hello); over it, a new socket is closed with 1008.
    max_unauthenticated: int = Field(default=64, ge=1, validation_alias="EXAI_MAX_UNAUTHENTICATED")
    # Frames before hello (native) are at most this big (never above EXAI_MAX_FRAME_BYTES);
    # bigger ones close the socket with 1009 before they are buffered.
    max_hello_frame_bytes: int = Field(
        default=8 * 1024, ge=256, validation_alias="EXAI_MAX_HELLO_FRAME_BYTES"
    )
    # Incoming frames websockets buffers per connection before it stops reading the
    # socket (its `max_queue`): at most this many x EXAI_MAX_FRAME_BYTES in memory.
    ws_max_queue: int = Field(default=4, ge=1, le=1024, validation_alias="EXAI_WS_MAX_QUEUE")
    # Frames (messages) per second per connection, with bursts of up to EXAI_WS_RATE_BURST;
    # over it a frame gets OVER_CAPACITY "rate limited" (MCP: JSON-RPC error -32000).
    ws_rate_per_s: float = Field(default=50.0, gt=0, validation_alias="EXAI_WS_RATE_PER_S")
    ws_rate_burst: int = Field(default=100, ge=1, validation_alias="EXAI_WS_RATE_BURST")
    ping_interval_s: float = Field(default=30.0, gt=0, validation_alias="EXAI_PING_INTERVAL_S")

    default_model: str = Field(
        default="kimi-k2-0905-preview", min_length=1, validation_alias="EXAI_DEFAULT_MODEL"
    )
    consensus_models: Annotated[list[str], NoDecode] = Field(
        default=["kimi-k2-0905-preview", "glm-4.5"],
        min_length=1,
        validation_alias="EXAI_CONSENSUS_MODELS",
    )

    # Conversation memory (chat with continuation_id). History is trimmed newest-first:
    # history + prompt within the model's character budget (longest matching name
    # prefix in EXAI_HISTORY_BUDGET_CHARS_BY_MODEL, else EXAI_HISTORY_BUDGET_CHARS), and
    # the request body within provider-proxy's limit (its EXAI_MAX_REQUEST_BYTES).
    history_budget_chars: int = Field(
        default=24_000, ge=0, validation_alias="EXAI_HISTORY_BUDGET_CHARS"
    )
    history_budget_chars_by_model: PrefixBudgets = Field(
        default_factory=lambda: dict(DEFAULT_HISTORY_BUDGETS),
        validation_alias="EXAI_HISTORY_BUDGET_CHARS_BY_MODEL",
    )
    provider_max_request_bytes: int = Field(
        default=8 * 1024 * 1024, ge=64 * 1024, validation_alias="EXAI_PROVIDER_MAX_REQUEST_BYTES"
    )
    # Storage never holds an answer for long: the history read has a short budget
    # (then the call goes on without history), and the answer waits at most
    # EXAI_MEMORY_WRITE_WAIT_S for its exchange to be stored; the write goes on after
    # the answer, for up to EXAI_MEMORY_WRITE_TIMEOUT_S (retries included).
    memory_read_timeout_s: float = Field(
        default=2.0, gt=0, validation_alias="EXAI_MEMORY_READ_TIMEOUT_S"
    )
    memory_write_wait_s: float = Field(
        default=1.0, ge=0, validation_alias="EXAI_MEMORY_WRITE_WAIT_S"
    )
    memory_write_timeout_s: float = Field(
        default=30.0, gt=0, validation_alias="EXAI_MEMORY_WRITE_TIMEOUT_S"
    )
    # After this many storage failures in a row, storage is not called for
    # EXAI_STORAGE_BREAKER_RESET_S (then one trial request).
    storage_breaker_failures: int = Field(
        default=5, ge=1, validation_alias="EXAI_STORAGE_BREAKER_FAILURES"
    )
    storage_breaker_reset_s: float = Field(
        default=10.0, gt=0, validation_alias="EXAI_STORAGE_BREAKER_RESET_S"
    )
    # /health and /health/ready: one probe of the dependencies serves every request
    # for this long (0: only requests that arrive while a probe runs share it).
    health_cache_s: float = Field(default=1.0, ge=0, le=60, validation_alias="EXAI_HEALTH_CACHE_S")

    # The latency objective (exai.gateway.latency_objective): what the gateway controls,
    # not how long a model thinks. A streamed call meets `first_chunk` when its first
    # chunk reaches the client within the threshold; every successful call meets
    # `overhead` when its duration minus the time spent waiting on the providers is
    # within its threshold. Per-tool values override the default for that tool.
    slo_first_chunk_s: float = Field(
        default=5.0, gt=0, allow_inf_nan=False, validation_alias="EXAI_SLO_FIRST_CHUNK_S"
    )
    slo_first_chunk_s_by_tool: ToolSeconds = Field(
        default_factory=dict, validation_alias="EXAI_SLO_FIRST_CHUNK_S_BY_TOOL"
    )
    slo_overhead_s: float = Field(
        default=0.5, gt=0, allow_inf_nan=False, validation_alias="EXAI_SLO_OVERHEAD_S"
    )
    slo_overhead_s_by_tool: ToolSeconds = Field(
        default_factory=dict, validation_alias="EXAI_SLO_OVERHEAD_S_BY_TOOL"
    )

    @field_validator("slo_first_chunk_s_by_tool", "slo_overhead_s_by_tool", mode="before")
    @classmethod
    def _tool_seconds(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():  # compose's `${VAR:-}`
                return {}
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError('expected a JSON object {"tool": seconds}') from None
        if not isinstance(value, dict):
            raise ValueError('expected a JSON object {"tool": seconds}')
        for tool, seconds in value.items():
            if tool not in GATEWAY_TOOLS:
                known = ", ".join(sorted(GATEWAY_TOOLS))
                raise ValueError(f"unknown tool {str(tool)[:64]!r} (tools: {known})")
            if (
                not isinstance(seconds, int | float)
                or isinstance(seconds, bool)
                or not math.isfinite(seconds)
                or seconds <= 0
            ):
                raise ValueError(f"{tool}: expected a number of seconds > 0")
        return {tool: float(seconds) for tool, seconds in value.items()}

    @field_validator("history_budget_chars_by_model", mode="before")
    @classmethod
    def _prefix_budgets(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        budgets: dict[str, str] = {}
        for pair in filter(None, (part.strip() for part in value.split(","))):
            prefix, sep, chars = pair.partition("=")
            if not sep or not prefix.strip() or not chars.strip():
                raise ValueError("expected prefix=chars pairs, e.g. kimi-=200000,glm-=100000")
            budgets[prefix.strip()] = chars.strip()
        return budgets

    @field_validator("provider_token", "storage_token", mode="before")
    @classmethod
    def _blank_token_is_unset(cls, value: Any) -> Any:
        return internal_auth.blank_is_unset(value)

    @field_validator("provider_token_file", "storage_token_file", mode="before")
    @classmethod
    def _read_token_file(cls, value: Any) -> Any:
        return internal_auth.token_from_file(value)

    @field_validator("provider_token", "storage_token")
    @classmethod
    def _token_required(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        return internal_auth.resolve_token(cls, value, info)

    @field_validator("consensus_models", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("ws_tokens_file", "ws_tokens")
    @classmethod
    def _real_tokens(
        cls, value: dict[str, list[SecretStr]], info: ValidationInfo
    ) -> dict[str, list[SecretStr]]:
        environment = info.data.get("environment", "development")
        for client_id, tokens in value.items():
            if not tokens:
                raise ValueError(f"client {client_id!r}: expected a token or a list of tokens")
            for token in tokens:
                try:
                    check_client_token(token.get_secret_value(), environment)
                except ValueError as exc:
                    raise ValueError(f"client {client_id!r}: token {exc}") from None
        if info.field_name == "ws_tokens":
            both = sorted(set(value) & set(info.data.get("ws_tokens_file") or {}))
            if both:
                raise ValueError(f"client {both[0]!r} is also in EXAI_WS_TOKENS_FILE")
        return value

    @field_validator("ws_token", mode="before")
    @classmethod
    def _blank_ws_token_is_unset(cls, value: Any) -> Any:
        # Blank (compose's `${VAR:-}`) is unset; alone, it is refused below as missing.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("ws_token")
    @classmethod
    def _real_token(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if "ws_tokens" not in info.data or "ws_tokens_file" not in info.data:
            return value  # one of them is invalid: that error is the one to report
        named = {**info.data["ws_tokens_file"], **info.data["ws_tokens"]}
        if value is None and not named:
            raise ValueError(
                "required: set EXAI_WS_TOKEN (client 'default'), EXAI_WS_TOKENS or "
                "EXAI_WS_TOKENS_FILE"
            )
        if value is not None:
            # `environment` is declared on the base class, so it is validated first.
            environment = info.data.get("environment", "development")
            check_client_token(value.get_secret_value(), environment)
            if DEFAULT_CLIENT_ID in named:
                raise ValueError(
                    f"is client {DEFAULT_CLIENT_ID!r}; EXAI_WS_TOKENS(_FILE) must not name it"
                )
        try:  # a token must say which client it is: never listed twice
            ClientTokens(token_table(value, named))
        except ValueError as exc:
            raise ValueError(f"client tokens must be unique: {exc}") from None
        return value

    def client_tokens(self) -> ClientTokens:
        """Every client token, for the hello and the MCP upgrade."""
        return ClientTokens(token_table(self.ws_token, {**self.ws_tokens_file, **self.ws_tokens}))

    def secret_values(self) -> list[str]:
        values = super().secret_values()
        for tokens in [*self.ws_tokens_file.values(), *self.ws_tokens.values()]:
            values.extend(token.get_secret_value() for token in tokens)
        return values


def token_table(
    default: SecretStr | None, named: dict[str, list[SecretStr]]
) -> dict[str, list[str]]:
    """{client id: [token values]}, EXAI_WS_TOKEN as client `default`."""
    tokens = {client: [t.get_secret_value() for t in listed] for client, listed in named.items()}
    if default is not None:
        tokens[DEFAULT_CLIENT_ID] = [default.get_secret_value()]
    return tokens
