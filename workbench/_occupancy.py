"""Who is driving a run right now: one caller at a time; any other is refused at once.

A call that steps, sends, rewinds, forks or closes a run holds it for its duration. The
holding thread may nest calls (an ``until`` predicate may read the run); a call from any
other thread gets :class:`~workbench.errors.RunBusy` instead of waiting, and one from inside
an agent's step (which its caller is waiting on, so it would wait for itself) gets a RunBusy
that says so. Nothing is journaled by a refused call.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from workbench._python_agent import current_agent
from workbench.errors import RunBusy

__all__ = ["Occupancy", "holding", "refuse_inside_step"]


class Occupancy:
    """The run's current driver (a thread and what it called)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._depth = 0
        self._action = ""

    @contextmanager
    def hold(self, action: str) -> Iterator[None]:
        """Hold the run for ``action``; RunBusy if another thread holds it."""
        me = threading.get_ident()
        with self._lock:
            if self._owner is not None and self._owner != me:
                raise self._busy(action)
            self._owner = me
            self._depth += 1
            if self._depth == 1:
                self._action = action
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._owner = None

    def check(self, action: str) -> None:
        """RunBusy if another thread holds the run now."""
        with self.hold(action):
            pass

    def _busy(self, action: str) -> RunBusy:
        agent = current_agent()
        if agent is not None:
            return inside_step(action, agent, self._action)
        if self._action == "start":  # the background driver
            return RunBusy(action)
        return RunBusy(action, "wait for that call to return, or drive the run with "
                       "run.start() and call run.pause() first",
                       why=f"run.{self._action}() is stepping it on another thread")


def inside_step(action: str, agent: str, driver: str = "step") -> RunBusy:
    """The RunBusy for ``action`` called from inside ``agent``'s step."""
    return RunBusy(action, "an agent acts on the run only through what its step returns "
                   "(state, outbox, status); call this after the step, from the code that "
                   "drives the run",
                   why=f"agent {agent!r} is in its step (run.{driver}() is waiting for that "
                   "step to end, so this call would wait for itself)")


def refuse_inside_step(action: str, agents: list[str]) -> None:
    """RunBusy if this thread is running the step of one of ``agents`` (pause() or wait()
    from there would wait for the step that is waiting for them)."""
    agent = current_agent()
    if agent is not None and agent in agents:
        raise inside_step(action, agent)


_Method = TypeVar("_Method", bound=Callable[..., Any])


def holding(action: str) -> Callable[[_Method], _Method]:
    """Decorate a Run method to hold the run (its ``_occupancy``) while it runs."""
    def decorate(method: _Method) -> _Method:
        @functools.wraps(method)
        def held(self: Any, *args: Any, **kwargs: Any) -> Any:
            with self._occupancy.hold(action):
                return method(self, *args, **kwargs)
        return cast(_Method, held)
    return decorate
