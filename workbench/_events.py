"""Events for observers (views, progress bars, exporters).

Observers see immutable :class:`Event` values and cannot change the run. Each subscription
has its own bounded queue and delivery thread: a slow observer drops its own oldest-undelivered
events (counted in ``Subscription.dropped``) and never blocks, slows or reorders the run.
Events carry wall-clock times for display; nothing here is journaled.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from workbench._types import JSON

DEFAULT_QUEUE_SIZE = 10_000
"""Events buffered per subscription before the oldest undelivered ones are dropped."""


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened. ``kind`` is one of :data:`EVENT_KINDS`."""

    kind: str
    step: int
    agent: str | None = None
    data: Mapping[str, JSON] = field(default_factory=dict)
    time: float = 0.0  # time.monotonic() when emitted; for display only

    def __repr__(self) -> str:
        who = f" {self.agent}" if self.agent else ""
        return f"<Event {self.kind} step={self.step}{who} {dict(self.data)}>"


EVENT_KINDS = (
    "run_started", "step_started", "agent_stepped", "message", "log", "fault",
    "infer_queued", "infer_batch", "token", "step_committed", "run_finished", "warning",
    "rewound",
)


class Subscription:
    """A live subscription. ``close()`` stops delivery; ``flush()`` waits for the backlog."""

    def __init__(self, bus: EventBus, callback: Callable[[Event], None], maxsize: int,
                 kinds: frozenset[str] | None) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._bus = bus
        self._callback = callback
        self._kinds = kinds
        self._queue: collections.deque[Event] = collections.deque()
        self._maxsize = maxsize
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self.dropped = 0
        self.errors = 0  # callbacks that raised (the exception is swallowed, counted)
        self._thread = threading.Thread(target=self._deliver, name="workbench-events",
                                        daemon=True)
        self._thread.start()

    def _offer(self, event: Event) -> None:
        if self._kinds is not None and event.kind not in self._kinds:
            return
        with self._cond:
            if self._closed:
                return
            if len(self._queue) >= self._maxsize:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(event)
            self._cond.notify()

    def _deliver(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                event = self._queue.popleft()
                self._busy = True
            try:
                self._callback(event)
            except Exception:
                self.errors += 1
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every queued event was delivered. Returns False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self) -> None:
        """Stop delivering; events already queued are still delivered. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._bus._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<Subscription queued={len(self._queue)} dropped={self.dropped} "
                f"closed={self._closed}>")


class EventBus:
    """Fan-out of run events to subscriptions."""

    def __init__(self) -> None:
        self._subs: tuple[Subscription, ...] = ()
        self._lock = threading.Lock()

    def subscribe(self, callback: Callable[[Event], None], *,
                  kinds: tuple[str, ...] | None = None,
                  maxsize: int = DEFAULT_QUEUE_SIZE) -> Subscription:
        """Call ``callback(event)`` from a delivery thread for each event (of ``kinds``)."""
        if kinds is not None:
            unknown = set(kinds) - set(EVENT_KINDS)
            if unknown:
                raise ValueError(f"unknown event kinds {sorted(unknown)}; "
                                 f"choose from {list(EVENT_KINDS)}")
        sub = Subscription(self, callback, maxsize, None if kinds is None else frozenset(kinds))
        with self._lock:
            self._subs = (*self._subs, sub)
        return sub

    def emit(self, kind: str, step: int, agent: str | None = None,
             data: Mapping[str, JSON] | None = None) -> None:
        subs = self._subs
        if not subs:
            return
        event = Event(kind, step, agent, data or {}, time.monotonic())
        for sub in subs:
            sub._offer(event)

    def close(self) -> None:
        for sub in self._subs:
            sub.close()

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not sub)
