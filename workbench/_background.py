"""Driving a run from a thread, so a notebook's kernel stays free: pause and resume take
effect at step boundaries, and the journal is the same bytes as a blocking run's."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from workbench.errors import RunBusy

__all__ = ["BackgroundDriver", "RunSummary"]


@dataclass
class RunSummary:
    """What ``run.run()`` did."""

    steps: int  # steps run by this call
    reason: str  # "quiescent" (no agent can run), "steps", "until", "stopped" (closed)
    next_step: int

    def __repr__(self) -> str:
        return f"<RunSummary {self.steps} steps, stopped: {self.reason}>"



class BackgroundDriver:
    """Steps a run from a thread; pause/resume at step boundaries. ``drive(driver)`` steps
    the run, calling ``driver.at_boundary()`` between steps, and returns its summary."""

    def __init__(self, drive: Callable[[BackgroundDriver], RunSummary]) -> None:
        self._drive = drive
        self._cond = threading.Condition()
        self._paused = False
        self._stopping = False
        self._waiting_at_boundary = False
        self._summary: RunSummary | None = None
        self._error: BaseException | None = None
        self._finished = False
        self._collected = False
        self._thread = threading.Thread(target=self._main, name="workbench-run", daemon=True)
        self._thread.start()

    @property
    def active(self) -> bool:
        with self._cond:
            return not self._finished and not self._paused

    @property
    def finished(self) -> bool:
        """True once the driver has stopped stepping for good (a summary or an error)."""
        with self._cond:
            return self._finished

    @property
    def collected(self) -> bool:
        """True once wait() has returned the driver's summary or raised its error."""
        with self._cond:
            return self._collected

    @property
    def parked(self) -> bool:
        """Paused and waiting at a step boundary (not finished)."""
        with self._cond:
            return self._paused and self._waiting_at_boundary and not self._finished

    def busy_hint(self) -> tuple[str, ...]:
        """What a caller refused with RunBusy can do now (empty: the default advice)."""
        with self._cond:
            if self._finished:
                return ("it has finished: call run.wait() to collect its result first",)
            if self._paused:
                if self._waiting_at_boundary:
                    return ("it is paused: call run.resume() (then run.wait()), or run.close()",)
                return ("it is pausing: wait for run.pause() to return, or run.close()",)
            return ()

    def _main(self) -> None:
        summary: RunSummary | None = None
        error: BaseException | None = None
        try:
            summary = self._drive(self)
        except BaseException as exc:  # re-raised in wait()
            error = exc
        with self._cond:
            self._summary, self._error, self._finished = summary, error, True
            self._cond.notify_all()

    def at_boundary(self) -> bool:
        """Called between steps: blocks while paused; False when asked to stop."""
        with self._cond:
            while self._paused and not self._stopping:
                self._waiting_at_boundary = True
                self._cond.notify_all()
                self._cond.wait()
            self._waiting_at_boundary = False
            return not self._stopping

    def pause(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._paused = True
            while not (self._waiting_at_boundary or self._finished):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("the current step did not finish in time; "
                                       "it will still pause at the next boundary")
                self._cond.wait(remaining)

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join()

    def wait(self, timeout: float | None) -> RunSummary | None:
        with self._cond:
            if self._paused and not self._finished:
                raise RunBusy("wait", "it is paused: call run.resume() first")
        self._thread.join(timeout)
        with self._cond:
            if not self._finished:
                return None
            self._collected = True
            if self._error is not None:
                raise self._error
            return self._summary
