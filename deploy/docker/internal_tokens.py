"""Compose's one-shot `internal-tokens` service: a random service-to-service token in
each directory given (one named volume per token), kept across restarts.

    internal_tokens.py [--rotate] DIR...

Each DIR gets a file `token` (32 random bytes, URL-safe base64), mode 0400, owned by
EXAI_TOKEN_OWNER (uid:gid; the services' user, 10001:10001): only the services that
mount that volume can read it, and they read it through `<VARIABLE>_FILE`. An existing
token is kept, so restarting one service never splits the stack; `--rotate` replaces
them all (then restart the services: `docker compose run --rm internal-tokens --rotate
&& docker compose restart`). Standard library only; the token itself is never printed.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

TOKEN_FILE = "token"


def _owner() -> tuple[int, int]:
    uid, _, gid = os.environ.get("EXAI_TOKEN_OWNER", "10001:10001").partition(":")
    return int(uid), int(gid or uid)


def ensure_token(directory: Path, *, rotate: bool, owner: tuple[int, int]) -> str:
    """Make sure `directory/token` holds a token; what was done, for the log."""
    path = directory / TOKEN_FILE
    if not rotate and path.exists() and path.read_text(encoding="utf-8").strip():
        return "kept"
    directory.mkdir(parents=True, exist_ok=True)
    staging = directory / f".{TOKEN_FILE}.new"
    staging.unlink(missing_ok=True)
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(secrets.token_urlsafe(32) + "\n")
    if os.geteuid() == 0:
        os.chown(staging, *owner)
    # Readers see the old token or the new one, never half a file.
    staging.replace(path)
    return "rotated" if rotate else "generated"


def main(argv: list[str]) -> int:
    rotate = "--rotate" in argv
    directories = [Path(arg) for arg in argv if arg != "--rotate"]
    if not directories:
        print("usage: internal_tokens.py [--rotate] DIR...", file=sys.stderr)
        return 2
    owner = _owner()
    for directory in directories:
        outcome = ensure_token(directory, rotate=rotate, owner=owner)
        print(f"internal token {outcome}: {directory / TOKEN_FILE}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
