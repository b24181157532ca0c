"""Client tokens: which client a WebSocket token belongs to (DESIGN §2-3).

Tokens come from three settings, all optional, at least one required:

- ``EXAI_WS_TOKEN``: one token, client id ``default`` (the single shared token of old);
- ``EXAI_WS_TOKENS``: a JSON object mapping client id to token, or to a list of tokens
  (several let a client rotate without downtime), e.g. ``{"alice": "…", "bob": ["…", "…"]}``;
- ``EXAI_WS_TOKENS_FILE``: a file holding such a JSON object (a mounted secret).

A client id is 1-64 characters of ``[A-Za-z0-9_.-]``: it goes on spans
(``exai.client.id``) and to storage-adapter (``X-EXAI-Client-ID``), which owns each
conversation by it. A token is never either. Every token is unique across clients.

:meth:`ClientTokens.client_for` compares the given token with *every* configured
token in constant time (:func:`hmac.compare_digest` on UTF-8 bytes), so neither which
token matched nor how many there are shows in the timing. Any ``str`` is safe to pass,
lone surrogates included: they are encoded with ``surrogatepass`` and simply match
nothing (a configured token is always valid UTF-8).
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

DEFAULT_CLIENT_ID = "default"
CLIENT_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
CLIENT_ID = re.compile(CLIENT_ID_PATTERN)
TOKENS_FORMAT = 'a JSON object of client id to token(s), e.g. {"alice": "…", "bob": ["…"]}'


def _as_bytes(token: str) -> bytes:
    return token.encode("utf-8", "surrogatepass")


class ClientTokens:
    """Token → client id, looked up in constant time over all tokens."""

    def __init__(self, by_client: Mapping[str, Iterable[str]]) -> None:
        entries: list[tuple[bytes, str]] = []
        seen: set[bytes] = set()
        for client_id, tokens in by_client.items():
            for token in tokens:
                raw = _as_bytes(token)
                if raw in seen:
                    raise ValueError(f"a token of client {client_id!r} is listed before")
                seen.add(raw)
                entries.append((raw, client_id))
        if not entries:
            raise ValueError("no client token configured")
        self._entries = tuple(entries)

    @classmethod
    def single(cls, token: str) -> ClientTokens:
        return cls({DEFAULT_CLIENT_ID: [token]})

    @property
    def client_ids(self) -> frozenset[str]:
        return frozenset(client_id for _, client_id in self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:  # never the tokens
        return f"ClientTokens({len(self._entries)} tokens, clients={sorted(self.client_ids)})"

    def client_for(self, given: object) -> str | None:
        """The client id `given` belongs to, or None. Every configured token is compared,
        whatever matches first."""
        if not isinstance(given, str):
            return None
        raw = _as_bytes(given)
        found: str | None = None
        for token, client_id in self._entries:
            if hmac.compare_digest(raw, token):
                found = client_id
        return found


def parse_token_map(text: str) -> dict[str, list[str]]:
    """`EXAI_WS_TOKENS` / the file's content → {client id: [tokens]}; ValueError naming
    the client (never quoting a token) when it is not the documented shape."""
    try:
        value = json.loads(text)
    except ValueError:
        raise ValueError(f"expected {TOKENS_FORMAT}") from None
    if not isinstance(value, dict) or not value:
        raise ValueError(f"expected {TOKENS_FORMAT}")
    result: dict[str, list[str]] = {}
    for client_id, tokens in value.items():
        if not CLIENT_ID.match(client_id):
            raise ValueError(
                f"client id {client_id[:64]!r} must be 1-64 characters of A-Z a-z 0-9 _ . -"
            )
        listed = [tokens] if isinstance(tokens, str) else tokens
        if (
            not isinstance(listed, list)
            or not listed
            or not all(isinstance(t, str) for t in listed)
        ):
            raise ValueError(f"client {client_id!r}: expected a token or a list of tokens")
        result[client_id] = listed
    return result


def read_token_file(path: str | Path) -> dict[str, list[str]]:
    """The token map in `path`; ValueError naming the path (never the content)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8"
        raise ValueError(f"cannot read {path}: {reason}") from None
    try:
        return parse_token_map(text)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
