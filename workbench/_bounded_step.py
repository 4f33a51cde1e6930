"""A wall-clock bound for in-process (Python) steps: ``Limits.timeout_s``.

Python cannot stop a thread, so a bounded step runs on another thread than the one that
waits for it: in a run, the scheduler's own pool thread runs it and the scheduler waits on its
:class:`StepWatch` (``PythonAgent.step_watched``; at the bound the pool thread is given up
and a new pool takes over); a ``PythonAgent`` stepped directly uses a helper thread
(:class:`BoundedRunner`). The bound counts the agent's own time only: time inside host calls
(an ``infer`` waiting for the batch, a slow host) is the host's, as for WebAssembly agents.
When the agent has used ``timeout_s`` seconds the caller gets a ``timeout`` fault at once and
the step's thread is **abandoned**: it runs on until the function returns, its result is
dropped, and its next host call raises :class:`StepAbandoned` (so nothing it does reaches the
journal).
A step is only abandoned between host calls, so the calls journaled for it are exactly those
it made before the deadline, which is what replay repeats (see ``workbench._replay``).

Helper threads are reused from step to step and released by :meth:`BoundedRunner.close`.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from workbench._types import JSON, Fault, HostCalls, StepResult

__all__ = ["BoundedRunner", "StepAbandoned", "StepWatch", "TimedHost", "timeout_fault"]


class StepAbandoned(BaseException):
    """Raised in an abandoned step at its next host call (a BaseException, so an agent's
    ``except Exception`` does not keep it running)."""


def timeout_fault(timeout_s: float) -> Fault:
    """The ``timeout`` fault, worded as the WebAssembly backstop's."""
    return Fault("timeout", f"the wall-clock backstop of {timeout_s} s stopped the step",
                 {"timeout_s": timeout_s})


class StepWatch:
    """One step's clock: wall time minus the time spent inside host calls, from
    :meth:`begin` (a step waiting for a thread has not started).

    Plain locks, not conditions: this hand-over is on every bounded step's path. ``_wake``
    is held until the step is done or a host call the waiter is waiting out has returned.
    """

    def __init__(self, started: bool = True) -> None:
        self.lock = threading.Lock()  # guards every field below
        self.done = False
        self.abandoned = False
        self.result: StepResult | None = None
        self.error: BaseException | None = None
        self._wake = threading.Lock()
        self._wake.acquire()
        self._woken = False  # _wake was released and not yet taken back by the waiter
        self._waiting_out_call = False
        self._start: float | None = time.monotonic() if started else None
        self._host_s = 0.0
        self._call_entered: float | None = None

    def begin(self) -> None:
        """The step starts running now (its clock starts)."""
        with self.lock:
            self._start = time.monotonic()
            self._signal()

    def enter_call(self) -> float:
        """A host call begins (its time is the host's); StepAbandoned once abandoned."""
        with self.lock:
            if self.abandoned:
                raise StepAbandoned("this step was stopped by its timeout_s")
            self._call_entered = entered = time.monotonic()
        return entered

    def leave_call(self, entered: float) -> None:
        with self.lock:
            self._host_s += time.monotonic() - entered
            self._call_entered = None
            if self._waiting_out_call:
                self._waiting_out_call = False
                self._signal()

    def run(self, step: Callable[[HostCalls], StepResult], host: HostCalls,
            before: Callable[[], None] = lambda: None) -> bool:
        """Run ``step`` in this thread with ``host``'s calls timed as the host's, and hand its
        outcome (result or exception) to the waiter; False if the step was abandoned."""
        result: StepResult | None = None
        error: BaseException | None = None
        try:
            result = step(TimedHost(host, self))
        except BaseException as exc:  # handed to the waiting caller (or dropped)
            error = exc
        return self.finish(result, error, before)

    def finish(self, result: StepResult | None, error: BaseException | None,
               before: Callable[[], None]) -> bool:
        """Call ``before``, then hand the step's outcome to the waiter; False (neither) if
        the step was abandoned."""
        with self.lock:
            if self.abandoned:
                return False
            before()
            self.result, self.error, self.done = result, error, True
            self._signal()
            return True

    def wait(self, timeout_s: float) -> bool:
        """Wait for the step; False (and the step abandoned) once it used ``timeout_s``."""
        while True:
            with self.lock:
                if self.done:
                    return True
                if self._call_entered is not None:  # the host's time: wait for the call
                    self._waiting_out_call, left = True, -1.0
                elif self._start is None:  # not started: wait for begin()
                    left = -1.0
                else:
                    left = timeout_s - (time.monotonic() - self._start - self._host_s)
                    if left <= 0:
                        self.abandoned = True
                        return False
            if self._wake.acquire(timeout=left):
                with self.lock:
                    self._woken = False

    def _signal(self) -> None:
        if not self._woken:
            self._woken = True
            self._wake.release()


class TimedHost:
    """The agent's host calls, timed as the host's and fenced once the step is abandoned."""

    def __init__(self, host: HostCalls, watch: StepWatch) -> None:
        self._host = host
        self._watch = watch

    def _timed(self, call: Callable[..., Any], *args: Any) -> Any:
        entered = self._watch.enter_call()
        try:
            return call(*args)
        finally:
            self._watch.leave_call(entered)

    def infer(self, request: Mapping[str, JSON]) -> dict[str, JSON]:
        result: dict[str, JSON] = self._timed(self._host.infer, request)
        return result

    def log(self, text: str) -> None:
        self._timed(self._host.log, text)

    def random(self) -> int:
        return int(self._timed(self._host.random))

    def now(self) -> int:
        return int(self._timed(self._host.now))

    def restart(self) -> None:
        self._timed(self._host.restart)


_Job = tuple[Callable[[HostCalls], StepResult], HostCalls, StepWatch]


class BoundedRunner:
    """Runs ``step(host)`` calls on reusable helper threads, each bounded by ``timeout_s``."""

    def __init__(self, name: str, timeout_s: float) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[_Job | None]] = []
        self._threads: dict[queue.SimpleQueue[_Job | None], threading.Thread] = {}

    def run(self, step: Callable[[HostCalls], StepResult], host: HostCalls) -> StepResult:
        """``step``'s result, or a ``timeout`` fault once it used ``timeout_s`` seconds.
        A BaseException raised by ``step`` (KeyboardInterrupt ...) is re-raised here."""
        watch = StepWatch()
        self._helper().put((step, host, watch))
        if not watch.wait(self.timeout_s):
            return StepResult(state=None, fault=timeout_fault(self.timeout_s))
        if watch.error is not None:
            raise watch.error
        assert watch.result is not None
        return watch.result

    def close(self) -> None:
        """Stop the idle helper threads (a step still running keeps its own). Idempotent;
        the runner stays usable (a later step starts a new helper)."""
        with self._lock:
            idle, self._idle = self._idle, []
            threads = [self._threads.pop(jobs) for jobs in idle]
        for jobs in idle:
            jobs.put(None)
        for thread in threads:
            thread.join()

    def _helper(self) -> queue.SimpleQueue[_Job | None]:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
            thread = threading.Thread(target=self._serve, args=(jobs,), daemon=True,
                                      name=f"workbench-python-agent-{self.name}")
            self._threads[jobs] = thread
        thread.start()
        return jobs

    def _serve(self, jobs: queue.SimpleQueue[_Job | None]) -> None:
        while (job := jobs.get()) is not None:
            step, host, watch = job
            # idle again before the waiter returns, so that the next step reuses this thread
            if not watch.run(step, host, lambda: self._release(jobs)):
                with self._lock:  # abandoned: the thread ends here
                    self._threads.pop(jobs, None)
                return

    def _release(self, jobs: queue.SimpleQueue[_Job | None]) -> None:
        with self._lock:
            self._idle.append(jobs)
