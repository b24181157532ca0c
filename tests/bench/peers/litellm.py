"""The peer: LiteLLM's proxy, pinned, in its own venv in the tool cache (never in ours)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LITELLM_VERSION = "1.100.0"  # 1.110.x needs a `litellm-proxy` package not served here
LITELLM_VENV = Path.home() / ".cache" / "exai" / "peers" / f"litellm-{LITELLM_VERSION}"


def ensure_litellm() -> Path:
    """The `litellm` CLI, installed once into its own venv."""
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        print(f"[bench-peers] installing litellm[proxy]=={LITELLM_VERSION}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run(
            [
                str(LITELLM_VENV / "bin" / "pip"),
                "install",
                "-q",
                f"litellm[proxy]=={LITELLM_VERSION}",
            ],
            check=True,
        )
    return binary


def litellm_config(path: Path, model: str, api_base: str, api_key: str) -> Path:
    """One OpenAI-compatible model routed to the simulator; no database, no callbacks."""
    path.write_text(
        "\n".join(
            [
                "model_list:",
                f"  - model_name: {model}",
                "    litellm_params:",
                f"      model: openai/{model}",
                f"      api_base: {api_base}",
                f"      api_key: {api_key}",
                "litellm_settings:",
                "  telemetry: false",
                "  drop_params: true",
                "general_settings:",
                "  disable_spend_logs: true",
                "",
            ]
        )
    )
    return path


def litellm_log_config(path: Path) -> Path:
    """No uvicorn access log line per request (the EXAI proxies write none either)."""
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "loggers": {"uvicorn.access": {"level": "WARNING"}},
            }
        )
    )
    return path
