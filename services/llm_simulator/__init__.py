"""llm-simulator: an OpenAI-compatible fake of the Kimi and GLM APIs (DESIGN §4b).

It stands in for the paid providers in demos, tests and load runs: deterministic
answers, each provider's usage and error shapes, configurable latency and streaming
speed, and faults injected per request (`X-Simulator-Fault`) or globally (`/admin`).

Modules: :mod:`~llm_simulator.providers` (the two response shapes),
:mod:`~llm_simulator.generation` (text and token counts), :mod:`~llm_simulator.state`
(faults, latency, counters), :mod:`~llm_simulator.chat` and :mod:`~llm_simulator.admin`
(the endpoints), :mod:`~llm_simulator.delivery` (pacing, SSE, disconnects).

Exceptions::

    SimulatorError
     └── ApiError   a request the provider refuses; rendered in that provider's error shape
"""

__version__ = "0.1.0"
