"""Claiming a journal file for one live run: never overwritten by accident, never shared.

:func:`claim` creates the file (refusing one that exists unless ``overwrite``) and takes an
exclusive, non-blocking lock held until :meth:`JournalClaim.release`. The lock is
``fcntl.flock`` on the journal itself on Linux and macOS (released by the system if the
process dies); on Windows it is ``msvcrt.locking`` on a ``<journal>.lock`` file beside it, so
the journal stays readable while a run writes it. Locks are advisory: they keep workbench
runs apart, not other programs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from workbench.errors import JournalError, JournalExists, JournalInUse

__all__ = ["JournalClaim", "claim"]


class JournalClaim:
    """The lock on a claimed journal. ``release`` is idempotent."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops the lock

    def __repr__(self) -> str:
        return f"<JournalClaim {self.path!r} {'held' if self._fd is not None else 'released'}>"


def claim(path: str, *, overwrite: bool) -> JournalClaim:
    """Create ``path`` (or, with ``overwrite``, open the existing file without changing it)
    and lock it. Raises JournalExists (exists, no ``overwrite``), JournalInUse (another live
    run holds it; an existing file is left untouched) or JournalError (cannot be created)."""
    flags = os.O_RDWR | os.O_CREAT | (0 if overwrite else os.O_EXCL)
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, flags | getattr(os, "O_BINARY", 0), 0o644)
    except FileExistsError:
        raise JournalExists(path) from None
    except OSError as exc:
        raise JournalError(f"cannot create journal {path!r}: {exc.strerror or exc}; pass "
                           "Run(journal=...) a writable path") from exc
    try:
        fd = _lock(path, fd)
    except BaseException:
        os.close(fd)
        raise
    return JournalClaim(path, fd)


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(path: str, fd: int) -> int:
        """Lock a ``<journal>.lock`` file beside the journal (``msvcrt`` locks are mandatory,
        so locking the journal itself would keep readers out); returns its descriptor."""
        lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_BINARY, 0o644)
        try:
            msvcrt.locking(lock_fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            os.close(lock_fd)
            raise JournalInUse(path) from None
        os.close(fd)
        return lock_fd
else:
    import fcntl

    def _lock(path: str, fd: int) -> int:
        """Lock the journal open on ``fd``; returns the descriptor whose closing unlocks it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JournalInUse(path) from None
        return fd
