"""Type aliases shared by the gateway's modules."""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

JSONObject: TypeAlias = dict[str, Any]
# Clients number their calls with strings or integers; echoed back exactly as sent.
RequestId: TypeAlias = str | int
# `client_error`: the caller's mistake (bad arguments, unknown tool or model), which the
# SLOs leave out; `error`: a server-side failure; `rejected`: over capacity or draining.
Outcome: TypeAlias = Literal["ok", "client_error", "error", "cancelled", "timeout", "rejected"]
ProtocolName: TypeAlias = Literal["native", "mcp"]
