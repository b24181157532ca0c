"""ws-gateway: the WebSocket front door of EXAI (DESIGN §3).

One port serves the EXAI native protocol (no subprotocol or ``exai.v1``), MCP
JSON-RPC over WebSocket (subprotocol ``mcp``) and the HTTP health endpoints.

Where things live:

- :mod:`ws_gateway.protocol` — the native protocol, sans-I/O (frames in, events and
  frames out)
- :mod:`ws_gateway.mcp_protocol` — MCP JSON-RPC, sans-I/O
- :mod:`ws_gateway.tools` — ``chat``, ``consensus``, ``listmodels``, ``status``
- :mod:`ws_gateway.limits` — in-flight and connection counters
- :mod:`ws_gateway.telemetry` — the per-call SERVER span and the gateway metrics
- :mod:`ws_gateway.clients` — HTTP clients for provider-proxy and storage-adapter
- :mod:`ws_gateway.server` — the asyncio server wiring it together

Exceptions::

    GatewayError
     └── CallError                 a call failed; carries the error frame's code
          ├── ToolNotFound         TOOL_NOT_FOUND
          ├── ToolValidationError  VALIDATION_ERROR
          ├── OverCapacity         OVER_CAPACITY
          ├── CallTimeout          TIMEOUT
          ├── ProviderError        PROVIDER_ERROR
          └── StorageError         STORAGE_ERROR
"""

__version__ = "0.1.0"
