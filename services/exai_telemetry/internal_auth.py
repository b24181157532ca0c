"""Service-to-service authentication: who may call provider-proxy, storage-adapter and
the llm-simulator's admin API.

Each callee has its own token, sent as `Authorization: Bearer <token>`:

==================  =============================  ==============================
callee              accepts                        sent by
==================  =============================  ==============================
provider-proxy      `EXAI_PROVIDER_TOKEN`          ws-gateway
storage-adapter     `EXAI_STORAGE_TOKEN`           ws-gateway
llm-simulator       `EXAI_SIMULATOR_ADMIN_TOKEN`   operators, tests (`/admin/*`)
==================  =============================  ==============================

A token comes from its variable or from a file named by `<VARIABLE>_FILE` (compose
writes random ones into a volume; `make run` generates them per run). No token has a
default: a service started without its own refuses to start, naming the variable,
unless `EXAI_INTERNAL_AUTH=off` (a developer's explicit opt-out). Health endpoints stay
open for probes. Tokens are compared in constant time and never logged: each is a
`SecretStr` setting, so the log and span scrubbers know its value.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi.responses import JSONResponse
from pydantic import BaseModel, SecretStr, ValidationInfo
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

INTERNAL_AUTH_VARIABLE = "EXAI_INTERNAL_AUTH"
MIN_TOKEN_LENGTH = 16
MAX_TOKEN_LENGTH = 512
# RFC 6750 b64token: what fits in a header unquoted (secrets.token_urlsafe() does).
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~+/-]+=*")
HEALTH_PATHS = frozenset({"/health", "/health/live", "/health/ready"})


def check_token(token: str) -> str:
    """`token` if it can be an internal token; ValueError (never quoting it) otherwise."""
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters long")
    if len(token) > MAX_TOKEN_LENGTH:
        raise ValueError(f"must be at most {MAX_TOKEN_LENGTH} characters long")
    if not _TOKEN_CHARS.fullmatch(token):
        raise ValueError("may hold only letters, digits and -._~+/ (then = padding)")
    return token


def token_from_file(value: object) -> object:
    """Before-validator of a `<VARIABLE>_FILE` field: the path becomes the file's
    content (one token, surrounding whitespace ignored); blank means unset."""
    if isinstance(value, str | Path):
        if not str(value).strip():
            return None
        try:
            text = Path(value).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            # The path is not secret; the content might be.
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8"
            raise ValueError(f"cannot read {value}: {reason}") from None
        token = text.strip()
        if not token:
            raise ValueError(f"{value} is empty")
        return token
    return value


def blank_is_unset(value: object) -> object:
    """Before-validator: compose's `${VAR:-}` gives an empty string, not an absent one."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


def resolve_token(
    settings_cls: type[BaseModel], value: SecretStr | None, info: ValidationInfo
) -> SecretStr | None:
    """After-validator of a token field `<name>`, declared after `<name>_file` (the token
    read from `<VARIABLE>_FILE`) and after `internal_auth`: the token from the variable
    or the file, checked; required unless internal auth is off."""
    name = str(info.field_name)
    variable = str(settings_cls.model_fields[name].validation_alias)
    from_file = info.data.get(f"{name}_file")
    if value is not None and from_file is not None:
        raise ValueError(f"set {variable} or {variable}_FILE, not both")
    if value is None and isinstance(from_file, SecretStr):
        value = from_file
    if value is None:
        if info.data.get("internal_auth", True):
            raise ValueError(
                f"required (or {variable}_FILE); {INTERNAL_AUTH_VARIABLE}=off runs without "
                "service-to-service authentication"
            )
        return None
    check_token(value.get_secret_value())
    return value


@dataclass(frozen=True)
class AuthFailure:
    """Why a request was refused; `message` names the variable, never a value."""

    code: str  # missing_token | invalid_token
    message: str


def default_rejection(failure: AuthFailure) -> Response:
    """`{"error": {"code", "message"}}` — storage-adapter's error shape."""
    return JSONResponse({"error": {"code": failure.code, "message": failure.message}}, 401)


def not_health(path: str) -> bool:
    return path not in HEALTH_PATHS


def under(prefix: str) -> Callable[[str], bool]:
    """Protect `prefix` and everything below it (`/admin`, `/admin/…`)."""
    return lambda path: path == prefix or path.startswith(prefix + "/")


def _bearer(scope: Scope) -> bytes | None:
    """The credentials of the request's `Authorization: Bearer …` header, as sent."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"authorization":
            scheme, _, credentials = bytes(value).strip().partition(b" ")
            return credentials.strip() if scheme.lower() == b"bearer" else b""
    return None


class InternalAuth:
    """ASGI middleware: an HTTP request to a protected path needs the callee's token.

    Outermost of the app's own middleware, so a refused request is answered before its
    body is read; the server span (the instrumentation wraps the whole stack) still
    records the 401. `protected(path)` chooses the paths (by default all but health).
    """

    def __init__(
        self,
        app: ASGIApp,
        token: SecretStr,
        variable: str,
        *,
        protected: Callable[[str], bool] = not_health,
        reject: Callable[[AuthFailure], Response] = default_rejection,
    ) -> None:
        self.app = app
        self._expected = token.get_secret_value().encode("ascii")
        self._variable = variable
        self._protected = protected
        self._reject = reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        presented = _bearer(scope)
        # compare_digest takes as long for a near miss as for a wild guess.
        if presented is not None and hmac.compare_digest(presented, self._expected):
            await self.app(scope, receive, send)
            return
        failure = (
            AuthFailure("missing_token", f"missing Authorization: Bearer <{self._variable}>")
            if presented is None
            else AuthFailure("invalid_token", f"invalid internal token (expected {self._variable})")
        )
        # Bounded: whoever is refused chooses the path.
        path = scope["path"][:200]
        logger.warning("refused %s %s: %s", scope.get("method", "?"), path, failure.code)
        response = self._reject(failure)
        response.headers["WWW-Authenticate"] = 'Bearer realm="exai"'
        await response(scope, receive, send)


def install_internal_auth(
    app: Starlette,
    token: SecretStr | None,
    variable: str,
    *,
    protected: Callable[[str], bool] = not_health,
    reject: Callable[[AuthFailure], Response] = default_rejection,
) -> None:
    """Add :class:`InternalAuth` as the app's outermost own middleware (call it after
    every other `add_middleware`). No token: settings validation let it through only
    with `EXAI_INTERNAL_AUTH=off`, so say once, loudly, that the service is open."""
    if token is None:
        logger.warning(
            "service-to-service authentication is off (%s=off): any caller that reaches "
            "this service may use it without %s",
            INTERNAL_AUTH_VARIABLE,
            variable,
        )
        return
    app.add_middleware(
        InternalAuth, token=token, variable=variable, protected=protected, reject=reject
    )
