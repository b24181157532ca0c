"""exai-canary: a synthetic client that proves the gateway answers, every 15 seconds.

Each check opens a WebSocket to the gateway, says hello with a client token and calls a
tool over the native protocol, exactly as a user's client would: ``status`` every
``EXAI_CANARY_INTERVAL_S``, and ``chat`` on ``EXAI_CANARY_CHAT_MODEL`` every
``EXAI_CANARY_CHAT_INTERVAL_S`` when the operator sets that model (off by default: a real
provider bills every call). Each check is one root span and is counted in
``exai.canary.checks``; the alerts CanaryFailing and CanarySilent page from those.

Modules: :mod:`~exai_canary.settings` (what it reads from the environment),
:mod:`~exai_canary.probe` (one check over the native protocol),
:mod:`~exai_canary.telemetry` (its metrics and names), :mod:`~exai_canary.runner` (the
check loops: span, metrics, one log line per change of state), :mod:`~exai_canary.app`
(the process: health endpoints, loops in the lifespan).

Exceptions::

    CanaryError
     └── CheckFailed          one check did not succeed; `reason` is bounded (error.type)
          ├── GatewayUnreachable   connect      no TCP connection or WebSocket upgrade
          ├── CheckTimeout         timeout      no answer within the check's timeout
          ├── Unauthorized         unauthorized the hello was refused (wrong token)
          ├── ConnectionLost       closed       the gateway closed the socket mid-call
          ├── ErrorFrame           <code>       the gateway answered with an error frame
          ├── GatewayUnhealthy     unhealthy    `status` says the gateway cannot serve calls
          └── ProtocolViolation    protocol     a frame that is not the native protocol
"""

__version__ = "0.1.0"
