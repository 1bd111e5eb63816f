"""Cutting a long Rust call into short ones, sized by measured work, so that Ctrl-C is
honoured promptly: the Rust kernels run with the GIL released, and Python raises
KeyboardInterrupt when control returns to it, i.e. at the end of the current call.

Every chunked kernel gives the same numbers for any cut (records sit at absolute step
counts; gradient studies are cut at random-stream boundaries), so the sizes may follow the
wall clock without changing a result.

A run in a thread other than the main one never sees Ctrl-C; :func:`abandon_on` gives it an
event instead (the sweep sets it on Ctrl-C), checked between calls: the run raises
:class:`Abandoned` within one call.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Optional

__all__ = ["CALL_SECONDS", "Abandoned", "abandon_on", "timed_chunks", "timed_ranges"]

#: Target duration of one Rust call: long enough that the per-call overhead (~50 µs) stays
#: negligible, short enough that Ctrl-C stops a run within 0.5 s (the next call is sized
#: from the last one's rate, so a call overshoots this by a small factor at most).
CALL_SECONDS = 0.1
#: Largest growth of the chunk size from one call to the next (the first calls are sized by
#: a conservative work estimate, then grow geometrically towards the target duration).
_GROWTH = 4

_abandon = threading.local()


class Abandoned(Exception):
    """Raised by a chunked run whose thread's abandon event (:func:`abandon_on`) was set."""


@contextlib.contextmanager
def abandon_on(event: threading.Event) -> Iterator[None]:
    """While in this context, every chunked run of this thread raises :class:`Abandoned`
    before its next call once ``event`` is set."""
    previous = getattr(_abandon, "event", None)
    _abandon.event = event
    try:
        yield
    finally:
        _abandon.event = previous


def _check_abandoned() -> None:
    event = getattr(_abandon, "event", None)
    if event is not None and event.is_set():
        raise Abandoned("the run was abandoned (its sweep was interrupted)")


def timed_chunks(
    total: int, first: int, quantum: int = 1, most: Optional[int] = None
) -> Iterator[int]:
    """Sizes of successive calls that add up to ``total``: the first is ``first`` (rounded to
    a multiple of ``quantum``), each later one aims at :data:`CALL_SECONDS` from the rate of
    the previous call (time from one yield to the next), growing at most 4× per call, never
    above ``most`` or below ``quantum``; the last is whatever remains."""
    most = total if most is None else max(quantum, most)
    size = min(max(quantum, first - first % quantum), most)
    done = 0
    while done < total:
        _check_abandoned()
        n = min(size, total - done)
        began = time.perf_counter()
        yield n
        elapsed = time.perf_counter() - began
        done += n
        per_call = n * CALL_SECONDS / elapsed if elapsed > 0 else _GROWTH * n
        size = int(min(per_call, _GROWTH * n, most))
        size = max(quantum, size - size % quantum)


def timed_ranges(total: int, first: int, quantum: int = 1) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of the chunks of :func:`timed_chunks` over ``range(total)``."""
    start = 0
    for n in timed_chunks(total, first, quantum):
        yield start, start + n
        start += n
