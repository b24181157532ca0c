"""Identifier formats (and the header carrying one) that cross a service boundary.

The gateway and storage-adapter validate a continuation ID with the same pattern, so an
ID the gateway accepts is one storage stores (and one that is safe in a URL path segment:
no ``.``, ``/``, ``:`` or ``?``).
"""

from __future__ import annotations

import re

CONTINUATION_ID_PATTERN = r"^[A-Za-z0-9_-]{3,128}$"
CONTINUATION_ID = re.compile(CONTINUATION_ID_PATTERN)


def is_continuation_id(value: object) -> bool:
    return isinstance(value, str) and CONTINUATION_ID.fullmatch(value) is not None


# Who owns a conversation: the gateway sends the client id (from the client's token,
# never the token itself) on every storage-adapter request; absent means the default.
CLIENT_ID_HEADER = "X-EXAI-Client-ID"
CLIENT_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
CLIENT_ID = re.compile(CLIENT_ID_PATTERN)
DEFAULT_CLIENT_ID = "default"


def is_client_id(value: object) -> bool:
    return isinstance(value, str) and CLIENT_ID.fullmatch(value) is not None
