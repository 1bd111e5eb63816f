"""Safe file writes: every file mixforget writes goes through :func:`atomic_write`.

The data is written to a temporary file created exclusively (``O_EXCL`` through
:func:`tempfile.mkstemp`, unpredictable name, never following a planted symlink) in the target's
directory, flushed to disk, then moved over the target with :func:`os.replace` (atomic on
POSIX): a failed or interrupted write leaves the target untouched and no temporary file
behind. :func:`check_writable` tries the same before long work starts, so that a run does not
compute for an hour and then fail to save.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "check_writable"]


def _directory(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path`` for writing (``mode`` 'wb' or 'w', the latter
    UTF-8); on success it replaces ``path`` atomically, on any failure it is removed."""
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=_directory(target))
    try:
        fh: IO[Any] = os.fdopen(fd, "wb") if mode == "wb" else os.fdopen(fd, "w", encoding="utf-8")
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def check_writable(path: str | os.PathLike[str], what: str) -> Path:
    """Check, before any work, that a file can be written at ``path``: its directory exists
    and a file can be created there (tried for real, so read-only file systems and
    permissions count, also for root), and ``path`` is not a directory. Raises OSError with
    a one-line message naming ``what``."""
    target = Path(path)
    directory = _directory(target)
    if not directory.is_dir():
        raise FileNotFoundError(f"{what}: directory {directory} does not exist")
    if target.is_dir():
        raise IsADirectoryError(f"{what}: {target} is a directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise PermissionError(
            f"{what}: cannot write in {directory}: {exc.strerror or exc}"
        ) from None
    os.close(fd)
    os.unlink(tmp)
    return target
