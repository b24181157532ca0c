"""Type aliases shared by the gateway's modules."""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

JSONObject: TypeAlias = dict[str, Any]
# Clients number their calls with strings or integers; echoed back exactly as sent.
RequestId: TypeAlias = str | int
Outcome: TypeAlias = Literal["ok", "error", "cancelled", "timeout", "rejected"]
ProtocolName: TypeAlias = Literal["native", "mcp"]
