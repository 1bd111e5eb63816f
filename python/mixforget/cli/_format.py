"""Text of a mean with its 95 % interval, as the demo table and ``mixforget simulate`` print it."""

from __future__ import annotations

from typing import Optional


def _fmt_ci(stats: Optional[dict[str, float]], digits: int = 4) -> str:
    """``"mean [lo, hi]"`` with ``digits`` decimals; ``"n/a"`` without statistics."""
    if not stats:
        return "n/a"
    return f"{stats['mean']:.{digits}f} [{stats['lo']:.{digits}f}, {stats['hi']:.{digits}f}]"
