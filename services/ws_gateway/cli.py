"""A first request from the command line: `python -m ws_gateway.cli --prompt "hello"`.

Speaks the native protocol (hello → call_tool), prints the answer, then the correlation
and trace IDs and how to follow them: the `exai trace` command line (no-Docker stack)
and the TraceQL query for Grafana (compose). The no-Docker Jaeger has no web UI (its
Go-module build carries no UI assets), so no Jaeger link is printed. The token comes
from `--token`, `EXAI_WS_TOKEN` or `.env`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import uuid
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from websockets.asyncio.client import connect

from exai_cli.tempo import traceql


class _ClientEnv(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")
    token: SecretStr | None = Field(default=None, validation_alias="EXAI_WS_TOKEN")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ws_gateway.cli", description=__doc__)
    parser.add_argument("--url", default="ws://127.0.0.1:8079")
    parser.add_argument("--token", help="defaults to EXAI_WS_TOKEN (environment or .env)")
    parser.add_argument("--tool", default="chat", help="chat | consensus | listmodels | status")
    parser.add_argument("--prompt", default="Hello from EXAI")
    parser.add_argument("--model")
    parser.add_argument("--continuation-id")
    parser.add_argument("--correlation-id", default=None)
    parser.add_argument("--stream", action="store_true")
    return parser.parse_args(argv)


def _exai_command() -> str:
    """How to run the `exai` console script from here: the venv's copy, else from PATH."""
    script = Path(sys.executable).with_name("exai")
    if not script.exists():
        return "exai"
    return os.path.relpath(script) if script.is_relative_to(Path.cwd()) else str(script)


def follow_hint(correlation_id: str, trace_id: str | None) -> str:
    """Where to look a call up, as lines that work when pasted."""
    ids = f"correlation_id={correlation_id}" + (f" trace_id={trace_id}" if trace_id else "")
    return (
        f"\n{ids}"
        f"\nFollow it (no-Docker stack): {_exai_command()} trace {shlex.quote(correlation_id)}"
        " --wait 30"
        f"\nIn Grafana (compose): Explore → Tempo → TraceQL {traceql(correlation_id)}"
    )


def _arguments(args: argparse.Namespace) -> dict[str, Any]:
    if args.tool not in ("chat", "consensus"):
        return {}
    arguments: dict[str, Any] = {"prompt": args.prompt}
    if args.model:
        arguments["model"] = args.model
    if args.continuation_id and args.tool == "chat":
        arguments["continuation_id"] = args.continuation_id
    return arguments


async def _run(args: argparse.Namespace, token: str) -> int:
    correlation_id = args.correlation_id or f"cli-{uuid.uuid4()}"
    async with connect(args.url) as ws:
        await ws.send(json.dumps({"op": "hello", "token": token}))
        ack = json.loads(await ws.recv())
        if not ack.get("ok"):
            print(f"hello refused: {ack.get('error')}", file=sys.stderr)
            return 1
        request_id = uuid.uuid4().hex[:12]
        await ws.send(
            json.dumps(
                {
                    "op": "call_tool",
                    "request_id": request_id,
                    "name": args.tool,
                    "arguments": _arguments(args),
                    "correlation_id": correlation_id,
                    "stream": args.stream,
                }
            )
        )
        async for raw in ws:
            frame = json.loads(raw)
            op = frame.get("op")
            if op == "stream_chunk":
                print(frame["chunk"], end="", flush=True)
            elif op == "call_tool_res":
                if not args.stream:
                    for output in frame.get("outputs", []):
                        print(output.get("text", ""))
                else:
                    print()
                print(
                    follow_hint(
                        frame.get("correlation_id") or correlation_id, frame.get("trace_id")
                    ),
                    file=sys.stderr,
                )
                return 0
            elif op == "error":
                print(f"error: {json.dumps(frame.get('error'))}", file=sys.stderr)
                # A failed call's trace is always kept by tail sampling: worth a look.
                print(follow_hint(correlation_id, frame.get("trace_id")), file=sys.stderr)
                return 1
    return 1


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    token = args.token or (
        secret.get_secret_value() if (secret := _ClientEnv().token) is not None else None
    )
    if not token:
        print("error: no token: pass --token or set EXAI_WS_TOKEN", file=sys.stderr)
        return 2
    return asyncio.run(_run(args, token))


if __name__ == "__main__":
    raise SystemExit(main())
