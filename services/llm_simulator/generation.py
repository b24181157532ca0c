"""Deterministic completions and token counts: the same conversation always gets the
same answer and the same usage, so tests anywhere can rely on them.

- Tokens: every whitespace-separated word costs ceil(len/4) tokens (at least 1), every
  message :data:`MESSAGE_OVERHEAD_TOKENS` more.
- Cached tokens: what a prefix cache would hit — every message before the last one
  (0 for a single-message conversation).
- Text: the first words of the last user message, echoed, plus two stock phrases and a
  digest of the whole conversation; both picked by its SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

MESSAGE_OVERHEAD_TOKENS = 3
ECHO_WORDS = 8
DIGEST_CHARS = 12

_OPENERS = (
    "Certainly.",
    "Here is a short answer.",
    "Good question.",
    "Let me think about that.",
    "Understood.",
    "Sure thing.",
    "Thanks for asking.",
    "Happy to help.",
)
_CLOSERS = (
    "The details depend on your setup.",
    "This reply was simulated.",
    "No real model was called.",
    "Ask again for the same answer.",
    "Consider the trade-offs first.",
    "That covers the main point.",
    "More context would sharpen this.",
    "Treat this as a placeholder.",
)
_PIECE = re.compile(r"\s*\S+")


class Turn(NamedTuple):
    """One message reduced to what generation reads: role and plain text."""

    role: str
    text: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def count_tokens(text: str) -> int:
    return sum(max(1, math.ceil(len(word) / 4)) for word in text.split())


def _turn_tokens(turn: Turn) -> int:
    return count_tokens(turn.text) + MESSAGE_OVERHEAD_TOKENS


def prompt_tokens(turns: Sequence[Turn]) -> int:
    return sum(_turn_tokens(t) for t in turns)


def cached_tokens(turns: Sequence[Turn]) -> int:
    return sum(_turn_tokens(t) for t in turns[:-1])


def prompt_digest(turns: Sequence[Turn]) -> str:
    canonical = json.dumps([[t.role, t.text] for t in turns], ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _echo(turns: Sequence[Turn]) -> str:
    source = next((t.text for t in reversed(turns) if t.role == "user"), turns[-1].text)
    words = source.split()
    echo = " ".join(words[:ECHO_WORDS])
    return echo + "…" if len(words) > ECHO_WORDS else echo


def completion_text(turns: Sequence[Turn], model: str) -> str:
    """The simulated answer; `turns` must not be empty."""
    digest = prompt_digest(turns)
    seed = int(digest[:8], 16)
    opener = _OPENERS[seed % len(_OPENERS)]
    closer = _CLOSERS[(seed >> 8) % len(_CLOSERS)]
    return (
        f'{opener} You said: "{_echo(turns)}". {closer} [simulated {model} {digest[:DIGEST_CHARS]}]'
    )


def usage_for(turns: Sequence[Turn], completion: str) -> Usage:
    return Usage(prompt_tokens(turns), count_tokens(completion), cached_tokens(turns))


def stream_pieces(text: str) -> list[str]:
    """`text` cut into word-sized chunks (leading whitespace kept) that concatenate back."""
    return _PIECE.findall(text)
