"""An engine a run loaded itself, shared with its forks and closed with the last of them."""

from __future__ import annotations

import threading

from workbench._types import InferenceBackend

__all__ = ["SharedEngine"]


class SharedEngine:
    """An engine a run loaded itself, shared with its forks: closed with the last of them."""

    def __init__(self, engine: InferenceBackend) -> None:
        self.engine = engine
        self._users = 1
        self._lock = threading.Lock()

    def share(self) -> SharedEngine:
        with self._lock:
            self._users += 1
        return self

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last:
            self.engine.close()
