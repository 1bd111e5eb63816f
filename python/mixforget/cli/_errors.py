"""The two failures the command line reports: a usage error (exit status 2) and a failed run
(exit status 1)."""

from __future__ import annotations


class _UsageError(Exception):
    """A usage/configuration problem: message on stderr, exit status 2."""


class _RunError(Exception):
    """A runtime failure (I/O, scheduler): message on stderr, exit status 1."""
