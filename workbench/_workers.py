"""What ``Run(workers=...)`` and ``replay(..., workers=...)`` mean: where WebAssembly runs.

- ``workers=N`` (or None: one per CPU core): the run owns a :class:`WorkerPool` of N
  processes, started when its first WebAssembly agent is added (a run of Python agents starts
  none) and closed by ``run.close()``. A fork shares its parent's pool; the last of them to
  close closes it.
- ``workers=0``: modules run in the kernel process (``LocalWasmExecutor``), no pool.
- ``workers=pool``: a :class:`WorkerPool` the caller made and may share between runs. The
  run loads its agents there and unloads them when it closes; it never closes the pool.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from workbench.errors import ConfigError, RunClosed

if TYPE_CHECKING:
    from workbench._wasm._pool import WorkerPool

__all__ = ["WorkerLease"]


class WorkerLease:
    """A run's hold on its worker pool: the pool it owns or was given, shared with its forks
    (:meth:`share`) and released by each of them once (:meth:`release`)."""

    def __init__(self, workers: Any) -> None:
        """Raises ConfigError unless ``workers`` is None, an int >= 0 or an open WorkerPool."""
        self._given: WorkerPool | None = None
        self._size: int | None = None
        if isinstance(workers, int) and not isinstance(workers, bool) and workers >= 0:
            self._size = workers
        elif workers is not None:
            self._given = _as_pool(workers)
        self._own: WorkerPool | None = None
        self._users = 1
        self._lock = threading.Lock()

    @property
    def in_process(self) -> bool:
        """True for ``workers=0``: WebAssembly agents run in the kernel process."""
        return self._given is None and self._size == 0

    def pool(self) -> WorkerPool:
        """The pool to load an agent into: the given one, or this run's own (started on the
        first call). Raises RunClosed once released, or if the given pool was closed, and
        OSError if the workers cannot be started."""
        with self._lock:
            if self._users == 0:
                raise RunClosed("run")
            if self._given is not None:
                return self._given
            if self._own is None:
                from workbench._wasm._pool import WorkerPool

                self._own = WorkerPool(self._size)
            return self._own

    def share(self) -> WorkerLease:
        """The same lease for a fork: the pool closes only when every holder released it."""
        with self._lock:
            self._users += 1
        return self

    def release(self) -> None:
        """Give up one hold; the last closes the pool this lease started (never a given one).
        Close the agents' executors first."""
        with self._lock:
            if self._users == 0:
                return
            self._users -= 1
            own = self._own if self._users == 0 else None
        if own is not None:
            own.close()

    def __repr__(self) -> str:
        if self._given is not None:
            return f"<WorkerLease given {self._given!r}>"
        return f"<WorkerLease workers={self._size} own={self._own!r} users={self._users}>"


def _as_pool(workers: object) -> WorkerPool:
    from workbench._wasm._pool import WorkerPool

    if not isinstance(workers, WorkerPool):
        raise ConfigError(f"workers must be a number of worker processes (0: run WebAssembly "
                          f"in this process), None (one per core) or a wb.WorkerPool, got "
                          f"{workers!r}")
    if workers.closed:
        raise RunClosed("the worker pool passed as workers=")
    return workers
