"""The CLI's exceptions; see the tree in :mod:`exai_cli`.

Each carries one line meant for the terminal: :func:`exai_cli.main.main` prints it and
exits non-zero, never with a traceback. Third-party errors (httpx, json) are translated
into these at the boundary.
"""

from __future__ import annotations


class ExaiCliError(Exception):
    """Root of the CLI's errors. ``exit_code`` is what the process exits with."""

    exit_code = 3


class SourceUnavailable(ExaiCliError):
    """A trace store or log source did not answer (refused, timed out, not found)."""


class BadResponse(ExaiCliError):
    """The source answered with something its API does not document."""


class BadUsage(ExaiCliError):
    """A setting the CLI reads from the environment is malformed."""

    exit_code = 2


class NotFound(ExaiCliError):
    """Nothing carries the correlation ID (yet)."""

    exit_code = 1
