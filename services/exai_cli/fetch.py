"""GET a JSON document from a trace store or log source, with httpx errors translated.

Every failure becomes one :class:`~exai_cli.errors.ExaiCliError` line naming the source
by its URL without credentials (a URL given as ``http://user:pass@host`` never reaches
the terminal with the password in it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from exai_cli.errors import BadResponse, SourceUnavailable

DEFAULT_TIMEOUT_S = 10.0


def display_url(url: str) -> str:
    """The URL without user info, query or fragment: safe to print."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def new_client(base_url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> httpx.Client:
    # No auth, no extra headers: the CLI only reads, and sends nothing worth hiding.
    return httpx.Client(base_url=base_url, timeout=timeout_s, follow_redirects=True)


def get_json(
    client: httpx.Client,
    path: str,
    params: Mapping[str, str | int] | None,
    *,
    source: str,
    missing_ok: bool = False,
) -> Any:
    """The decoded JSON body; None for a 404 when `missing_ok`."""
    try:
        response = client.get(path, params=params)
    except httpx.TimeoutException as exc:
        raise SourceUnavailable(f"{source} did not answer in time ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise SourceUnavailable(f"{source} is unreachable: {reason}") from exc
    if response.status_code == 404 and missing_ok:
        return None
    if response.status_code >= 400:
        detail = " ".join(response.text.split())[:200]
        raise BadResponse(f"{source} answered HTTP {response.status_code} to {path}: {detail}")
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadResponse(f"{source} answered {path} with something that is not JSON") from exc


def ping(client: httpx.Client, path: str, *, source: str) -> None:
    """Raise :class:`SourceUnavailable` unless `path` answers below 400."""
    try:
        response = client.get(path)
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise SourceUnavailable(f"{source} is unreachable: {reason}") from exc
    if response.status_code >= 400:
        raise SourceUnavailable(f"{source} answered HTTP {response.status_code} to {path}")
