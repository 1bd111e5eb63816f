"""Safe file writes: every file mixforget writes goes through :func:`atomic_write`.

The data is written to a temporary file created exclusively (``O_EXCL`` through
:func:`tempfile.mkstemp`, unpredictable name, never following a planted symlink) in the target's
directory, flushed to disk, then moved over the target with :func:`os.replace` (atomic on
POSIX): a failed or interrupted write leaves the target untouched and no temporary file
behind. The file gets the permissions a plain ``open()`` would give it: 0o666 less the umask
for a new file (0o644 under umask 022), the old file's mode when it replaces one (mkstemp's
own 0o600 would make results unreadable to collaborators). :func:`check_writable` tries the
same before long work starts, so that a run does not compute for an hour and then fail to
save.
"""

from __future__ import annotations

import contextlib
import os
import stat
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
    directory = _directory(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:  # name the user's path, not the temporary file's
        why = f"directory {directory} does not exist" if not directory.is_dir() else exc.strerror
        raise type(exc)(exc.errno, f"cannot write {target}: {why}") from None
    try:
        os.fchmod(fd, _file_mode(target))
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


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (/proc), else by
    setting and restoring it."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _file_mode(target: Path) -> int:
    """Permission bits for the file written at ``target``: those of the regular file it
    replaces, else 0o666 less the umask (what ``open(target, "w")`` would create)."""
    try:
        old = os.lstat(target)
    except OSError:
        old = None
    if old is not None and stat.S_ISREG(old.st_mode):
        return stat.S_IMODE(old.st_mode)
    return 0o666 & ~_umask()


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
