"""Events for observers (views, progress bars, exporters): typed, copied, two streams.

Every event is a frozen class with the fields of its kind (``event.kind`` names it;
``event.data`` shows its own fields as a read-only mapping). Values an observer receives are
deep, read-only copies (mappings and tuples), so nothing it holds or does changes a run.

Two streams:

* **committed** (:class:`CommittedEvent`): derived from the journal's records when a step
  commits, by :func:`committed_events`, the same function :func:`events_from_journal` uses,
  so the stream can be rebuilt from a journal alone. Each carries its record's ``index`` and
  byte ``offset``. Never lost: a subscriber whose queue is full falls behind and catches up
  from the journal, in order. Run controls (``rewound``, ``run_finished``) travel with it.
* **live** (:class:`LiveEvent`): tokens, barrier phases, batch timings, provider fallbacks,
  ``step_abandoned``. Lossy by design: each carries a sequence number; a subscriber that had
  to drop some receives a :class:`Gap` saying how many before the next one.

Each subscription has its own bounded queue and delivery thread; a slow observer never
blocks, slows or reorders the run. A callback that raises is counted in
``Subscription.errors`` and its last exception is kept in ``Subscription.last_error``.
Wall-clock fields (``time``, timings) are for display and never journaled.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import threading
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypedDict

from workbench._records import (
    AgentResult,
    Call,
    Commit,
    EngineWarning,
    Record,
    RunHeader,
    StepStart,
    UserSend,
    committed,
)
from workbench._types import JSON

__all__ = ["EVENT_KINDS", "TIMING_KINDS", "CommittedEvent", "Event", "EventBus", "LiveEvent",
           "Subscription", "committed_events", "events_from_journal", "freeze", "schema_table"]

DEFAULT_QUEUE_SIZE = 10_000
"""Events buffered per subscription (committed events past it are caught up from the
journal; live ones are dropped, oldest first, and reported by a Gap)."""

def freeze(value: Any) -> Any:
    """A deep, read-only copy of JSON-like data: mappings become read-only mappings, lists
    and tuples become tuples. Other values are returned as they are (immutable in JSON)."""
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every event: the step it belongs to and the agent it concerns (if any)."""

    KIND: ClassVar[str] = "event"
    STREAM: ClassVar[str] = "live"
    step: int
    agent: str | None = None
    time: float = field(default=0.0, compare=False)  # time.monotonic(); display only

    @property
    def kind(self) -> str:
        return self.KIND

    @property
    def data(self) -> Mapping[str, Any]:
        """The kind's own fields (not those of its stream's base class)."""
        base = _base_fields(CommittedEvent if isinstance(self, CommittedEvent) else LiveEvent)
        return types.MappingProxyType({f.name: getattr(self, f.name)
                                       for f in dataclasses.fields(self)
                                       if f.name not in base})


@dataclass(frozen=True, kw_only=True)
class CommittedEvent(Event):
    """An event derived from a committed journal record (``index``: its position in the
    journal, ``offset``: its byte offset); -1 for run controls that no record holds."""

    STREAM: ClassVar[str] = "committed"
    index: int = -1
    offset: int = -1
    part: int = 0  # the event's place among its record's events

    @property
    def position(self) -> tuple[int, int]:
        """(record index, part): the committed stream's order."""
        return (self.index, self.part)


@dataclass(frozen=True, kw_only=True)
class LiveEvent(Event):
    """A lossy, display-only event. ``seq`` numbers the run's live events from 0."""

    seq: int = 0


@functools.cache
def _base_fields(cls: type[Event]) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


# --- committed: one per record kind (or part of one) -------------------------------------

@dataclass(frozen=True, kw_only=True)
class RunStarted(CommittedEvent):
    KIND: ClassVar[str] = "run_started"
    seed: int
    agents: tuple[str, ...]
    policy: str


@dataclass(frozen=True, kw_only=True)
class UserMessage(CommittedEvent):
    KIND: ClassVar[str] = "user_message"
    to: str
    seq: int
    payload: Any


@dataclass(frozen=True, kw_only=True)
class StepStarted(CommittedEvent):
    KIND: ClassVar[str] = "step_started"
    agents: tuple[str, ...]
    inbox: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class LogLine(CommittedEvent):
    KIND: ClassVar[str] = "log"
    call: int
    text: str


@dataclass(frozen=True, kw_only=True)
class InferDone(CommittedEvent):
    KIND: ClassVar[str] = "infer_done"
    call: int
    text: str
    tokens: int
    finish_reason: str | None
    provider: str | None
    error: str | None


@dataclass(frozen=True, kw_only=True)
class AgentStepped(CommittedEvent):
    KIND: ClassVar[str] = "agent_stepped"
    status: str
    messages: int
    fault: str | None
    state: Any
    requests: int = 0  # inference requests so far (the run's counters)
    tokens: int = 0  # tokens generated so far


@dataclass(frozen=True, kw_only=True)
class MessageSent(CommittedEvent):
    KIND: ClassVar[str] = "message"
    to: str
    seq: int
    payload: Any


@dataclass(frozen=True, kw_only=True)
class FaultRaised(CommittedEvent):
    KIND: ClassVar[str] = "fault"
    fault_kind: str
    detail: str
    fault_data: Any


@dataclass(frozen=True, kw_only=True)
class EngineWarned(CommittedEvent):
    KIND: ClassVar[str] = "warning"
    warning: Any


@dataclass(frozen=True, kw_only=True)
class StepCommitted(CommittedEvent):
    KIND: ClassVar[str] = "step_committed"


@dataclass(frozen=True, kw_only=True)
class Rewound(CommittedEvent):
    """The run was rewound to the end of ``step``; records from ``index`` on were cut."""

    KIND: ClassVar[str] = "rewound"


@dataclass(frozen=True, kw_only=True)
class RunFinished(CommittedEvent):
    KIND: ClassVar[str] = "run_finished"
    reason: str
    steps: int


# --- live ------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class StepRunning(LiveEvent):
    """Step ``step`` began running ``agents`` (committed as ``step_started`` with its
    results)."""

    KIND: ClassVar[str] = "step_running"
    agents: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class InferQueued(LiveEvent):
    KIND: ClassVar[str] = "infer_queued"
    call: int


@dataclass(frozen=True, kw_only=True)
class BatchRan(LiveEvent):
    """One batch at the inference barrier: ``phase`` start or end; at the end, per request
    (in ``agents`` order) its tokens, queue wait, prefill and decode seconds."""

    KIND: ClassVar[str] = "infer_batch"
    phase: str
    agents: tuple[str, ...]
    batch: int = 0
    provider: str | None = None
    tokens: tuple[int, ...] = ()
    queue_s: tuple[float, ...] = ()
    prefill_s: tuple[float, ...] = ()
    decode_s: tuple[float, ...] = ()


@dataclass(frozen=True, kw_only=True)
class TokenStreamed(LiveEvent):
    KIND: ClassVar[str] = "token"
    call: int
    token: int
    text: str


@dataclass(frozen=True, kw_only=True)
class EngineNotice(LiveEvent):
    """An engine warning as it happens (provider fallback, stream restart); journaled, and
    sent again as ``warning``, when its step commits."""

    KIND: ClassVar[str] = "engine_notice"
    warning: Any


@dataclass(frozen=True, kw_only=True)
class AgentUsage(LiveEvent):
    """What ``agent`` used in step ``step`` (WebAssembly agents): fuel and memory bytes."""

    KIND: ClassVar[str] = "agent_usage"
    fuel: int
    memory: int


@dataclass(frozen=True, kw_only=True)
class StepAbandoned(LiveEvent):
    """Step ``step`` was thrown away (nothing of it was committed): live events sent for it
    described work that did not happen."""

    KIND: ClassVar[str] = "step_abandoned"
    reason: str


@dataclass(frozen=True, kw_only=True)
class Gap(LiveEvent):
    """This subscriber dropped ``dropped`` live events before the next one."""

    KIND: ClassVar[str] = "gap"
    dropped: int


_LIVE: dict[str, type[LiveEvent]] = {c.KIND: c for c in (
    StepRunning, InferQueued, BatchRan, TokenStreamed, EngineNotice, AgentUsage,
    StepAbandoned)}
_COMMITTED: tuple[type[CommittedEvent], ...] = (
    RunStarted, UserMessage, StepStarted, LogLine, InferDone, AgentStepped, MessageSent,
    FaultRaised, EngineWarned, StepCommitted, Rewound, RunFinished)
EVENT_KINDS: tuple[str, ...] = (*(c.KIND for c in _COMMITTED), *_LIVE, Gap.KIND)


class _At(TypedDict):
    index: int
    offset: int
    time: float


def committed_events(record: Record, index: int, offset: int, *,
                     time: float = 0.0) -> list[CommittedEvent]:
    """The committed events of one journal record (at ``index``, byte ``offset``);
    ``time`` (display only) stamps them."""
    return _record_events(record, _At(index=index, offset=offset, time=time))


def _record_events(record: Record, at: _At) -> list[CommittedEvent]:
    if isinstance(record, RunHeader):
        return [RunStarted(step=-1, seed=record.seed, agents=tuple(a.name for a in record.agents),
                           policy=str(record.policy.get("name")), **at)]
    if isinstance(record, UserSend):
        m = record.as_message()
        return [UserMessage(step=m.step, agent=m.sender, to=m.to, seq=m.seq,
                            payload=freeze(m.payload), **at)]
    if isinstance(record, StepStart):
        return [StepStarted(step=record.step, agents=record.agents, inbox=record.inbox,
                            **at)]
    if isinstance(record, Call):
        return _call_events(record, at)
    if isinstance(record, AgentResult):
        return _agent_events(record, at)
    if isinstance(record, EngineWarning):
        return [EngineWarned(step=record.step, warning=freeze(record.data), **at)]
    if isinstance(record, Commit):
        return [StepCommitted(step=record.step, **at)]
    return []  # a snapshot: a fork's starting point, nothing happened


def _call_events(r: Call, at: _At) -> list[CommittedEvent]:
    if r.fn == "log":
        return [LogLine(step=r.step, agent=r.agent, call=r.index, text=str(r.request), **at)]
    if r.fn != "infer":
        return []
    res: Mapping[str, Any] = r.result if isinstance(r.result, dict) else {}
    tokens = res.get("tokens")
    return [InferDone(step=r.step, agent=r.agent, call=r.index, text=str(res.get("text", "")),
                      tokens=len(tokens) if isinstance(tokens, list) else 0,
                      finish_reason=res.get("finish_reason"), provider=res.get("provider"),
                      error=res.get("error"), **at)]


def _agent_events(r: AgentResult, at: _At) -> list[CommittedEvent]:
    """AgentStepped, then FaultRaised (if any), then a MessageSent per message: ``part``
    numbers them in that order."""
    fault = r.fault
    events: list[CommittedEvent] = [AgentStepped(
        step=r.step, agent=r.agent, status=r.status, messages=len(r.outbox),
        fault=str(fault["kind"]) if fault is not None else None, state=freeze(r.state),
        requests=r.counters[0], tokens=r.counters[1], **at)]
    if fault is not None:
        events.append(FaultRaised(step=r.step, agent=r.agent, fault_kind=str(fault["kind"]),
                                  detail=str(fault["detail"]),
                                  fault_data=freeze(fault.get("data")), part=1, **at))
    events += [MessageSent(step=r.step, agent=r.agent, to=m.to, seq=m.seq,
                           payload=freeze(m.payload), part=len(events) + k, **at)
               for k, m in enumerate(r.outbox)]
    return events


def events_from_journal(path: Any, *, start: int = 0) -> list[CommittedEvent]:
    """The committed event stream of the journal at ``path``, rebuilt from its records
    alone (from record ``start`` on): what a subscriber of the run saw, minus run controls.
    A step without its commit record (a crash) is left out. Raises JournalCorrupt."""
    from workbench._journal import read_journal

    journal = read_journal(path)
    records = committed(journal.typed)
    out: list[CommittedEvent] = []
    for i in range(start, len(records)):
        out += committed_events(records[i], i, journal.offsets[i])
    return out


CatchUp = Callable[[int], Sequence[CommittedEvent]]


class Subscription:
    """A live subscription. ``close()`` stops delivery; ``flush()`` waits for the backlog."""

    def __init__(self, bus: EventBus, callback: Callable[[Event], None], maxsize: int,
                 kinds: frozenset[str] | None, since: int | None) -> None:
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
        # committed events were left out (or came before ``since``): catch up from the journal
        self._behind = since is not None and bus.catch_up is not None
        self._cursor = (since or 0, 0)  # the next committed (index, part) due
        self._gap = 0  # live events dropped since the last one delivered
        self.dropped = 0  # live events dropped
        self.caught_up = 0  # committed events delivered from the journal
        self.errors = 0  # callbacks that raised (counted; see last_error)
        self.last_error: BaseException | None = None
        self._thread = threading.Thread(target=self._deliver, name="workbench-events",
                                        daemon=True)
        self._thread.start()

    def _wants(self, event: Event) -> bool:
        return self._kinds is None or event.kind in self._kinds

    def _offer(self, event: Event) -> None:
        with self._cond:
            if self._closed:
                return
            if isinstance(event, CommittedEvent):
                self._offer_committed(event)
            elif self._wants(event):
                if len(self._queue) >= self._maxsize and not self._drop_live():
                    self._gap += 1
                    self.dropped += 1
                    return
                self._queue.append(event)
            self._cond.notify()

    def _offer_committed(self, event: CommittedEvent) -> None:
        if isinstance(event, Rewound):  # later records reuse the cut indices
            self._queue = collections.deque(e for e in self._queue
                                            if not isinstance(e, CommittedEvent)
                                            or e.index < event.index)
            self._behind = False
        if event.index >= 0 and (self._behind or not self._wants(event)):
            return  # the journal holds it; a catch-up delivers it in order
        full = len(self._queue) >= self._maxsize
        if event.index >= 0 and full and self._bus.catch_up is not None \
                and not self._drop_live():
            self._behind = True
            return
        self._queue.append(event)

    def _drop_live(self) -> bool:
        """Make room by dropping the oldest queued live event; False if there is none."""
        for i, queued in enumerate(self._queue):
            if isinstance(queued, LiveEvent):
                del self._queue[i]
                self._gap += 1
                self.dropped += 1
                return True
        return False

    def _next(self) -> list[Event] | None:
        """The next events to deliver, in order; None when closed and drained."""
        with self._cond:
            while not self._queue and not self._behind and not self._closed:
                self._cond.wait()
            if self._queue:
                event = self._queue.popleft()
                self._busy = True
                if isinstance(event, LiveEvent) and self._gap:
                    gap = Gap(step=event.step, dropped=self._gap, seq=event.seq)
                    self._gap = 0
                    return [gap, event]
                return [event]
            if self._gap:  # live events were dropped and nothing came after them
                gap = Gap(step=-1, dropped=self._gap, seq=-1)
                self._gap = 0
                self._busy = True
                return [gap]
            if self._behind:
                self._behind = False
                self._busy = True
                start = self._cursor
            else:
                return None
        catch_up = self._bus.catch_up
        events = [e for e in catch_up(start[0]) if e.position >= start] if catch_up else []
        self.caught_up += len(events)
        return list(events)

    def _deliver(self) -> None:
        while True:
            batch = self._next()
            if batch is None:
                return
            try:
                for event in batch:
                    self._call(event)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _call(self, event: Event) -> None:
        if isinstance(event, Rewound):
            self._cursor = (event.index, 0)
        elif isinstance(event, CommittedEvent) and event.index >= 0:
            if event.position < self._cursor:
                return  # already delivered by a catch-up
            self._cursor = (event.index, event.part + 1)
        if not self._wants(event):
            return
        try:
            self._callback(event)
        except Exception as exc:
            self.errors += 1
            self.last_error = exc

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every queued event was delivered. Returns False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy or self._behind:
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
                f"caught_up={self.caught_up} errors={self.errors} closed={self._closed}>")


TIMING_KINDS = frozenset({"step_running", "infer_batch", "agent_usage", "step_abandoned"})
"""Live kinds a bus keeps a bounded record of, subscribed or not (see EventBus.timings)."""
MAX_TIMINGS = 50_000
"""Timing events (and as many commit times) a bus keeps, oldest dropped."""


_Timing = tuple[str, int, str | None, Mapping[str, JSON] | None, float, int]


def _live_event(kind: str, step: int, agent: str | None, data: Mapping[str, JSON] | None,
                when: float, seq: int) -> LiveEvent:
    fields = {k: freeze(v) for k, v in (data or {}).items()}
    return _LIVE[kind](step=step, agent=agent, time=when, seq=seq, **fields)


class EventBus:
    """Fan-out of run events to subscriptions. ``catch_up(start)`` (set by the run) returns
    the committed events of the journal from record ``start`` on.

    The bus also keeps a bounded record of the run's timings (the live events of
    TIMING_KINDS and each step's commit time), so a view attached after the steps ran can
    still lay them out on a measured clock. They are never journaled."""

    def __init__(self) -> None:
        self._subs: tuple[Subscription, ...] = ()
        self._lock = threading.Lock()
        self._live_seq = 0
        self.catch_up: CatchUp | None = None
        # (kind, step, agent, data, time, seq): an event is built only when asked for
        self._timings: collections.deque[_Timing] = collections.deque(maxlen=MAX_TIMINGS)
        self._commit_times: dict[int, float] = {}

    def committed_at(self, step: int, when: float) -> None:
        """Note the time step ``step`` committed (see :meth:`timings`)."""
        with self._lock:
            self._commit_times[step] = when
            if len(self._commit_times) > MAX_TIMINGS:
                self._commit_times.pop(next(iter(self._commit_times)))

    def timings(self) -> tuple[list[LiveEvent], dict[int, float]]:
        """The timing events kept so far, and the commit time of each step kept."""
        with self._lock:
            kept, commits = list(self._timings), dict(self._commit_times)
        return [_live_event(*t) for t in kept], commits

    def forget_after(self, step: int) -> None:
        """Drop the timings of steps after ``step`` (the run was rewound there)."""
        with self._lock:
            self._timings = collections.deque((t for t in self._timings if t[1] <= step),
                                              maxlen=MAX_TIMINGS)
            self._commit_times = {t: w for t, w in self._commit_times.items() if t <= step}

    def subscribe(self, callback: Callable[[Event], None], *,
                  kinds: Sequence[str] | None = None, maxsize: int = DEFAULT_QUEUE_SIZE,
                  since: int | None = None) -> Subscription:
        """Call ``callback(event)`` from a delivery thread for each event (of ``kinds``).
        ``since=0`` first delivers the committed events already in the journal (a view
        attached late sees the whole run); ``since=k`` those from record k on."""
        if kinds is not None:
            unknown = set(kinds) - set(EVENT_KINDS)
            if unknown:
                raise ValueError(f"unknown event kinds {sorted(unknown)}; "
                                 f"choose from {list(EVENT_KINDS)}")
        sub = Subscription(self, callback, maxsize, None if kinds is None else frozenset(kinds),
                           since)
        with self._lock:
            self._subs = (*self._subs, sub)
        return sub

    @property
    def active(self) -> bool:
        """Whether anyone subscribes (events need not be built otherwise)."""
        return bool(self._subs)

    def publish(self, events: Sequence[CommittedEvent]) -> None:
        """Deliver committed events (already in the journal, stamped with their ``time``) to
        every subscription."""
        subs = self._subs
        for event in events:
            for sub in subs:
                sub._offer(event)

    def emit(self, kind: str, step: int, agent: str | None = None,
             data: Mapping[str, JSON] | None = None) -> None:
        """Send a live event of ``kind`` (its fields from ``data``, copied read-only). A
        timing kind's ``data`` is also kept as given until someone asks for the timings:
        pass values that nothing changes afterwards."""
        subs = self._subs
        timing = kind in TIMING_KINDS
        if not subs and not timing:
            return
        with self._lock:
            seq = self._live_seq
            self._live_seq += 1
        now = time.monotonic()
        if timing:
            self._timings.append((kind, step, agent, data, now, seq))
        if subs:
            event = _live_event(kind, step, agent, data, now, seq)
            for sub in subs:
                sub._offer(event)

    def control(self, event: CommittedEvent) -> None:
        """Deliver a run control (rewound, run_finished): committed stream, no record."""
        self.publish([event])

    def close(self) -> None:
        for sub in self._subs:
            sub.close()

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not sub)


def schema_table() -> str:
    """The event kinds and their fields as a Markdown table (docs/internals.md shows it)."""
    rows = ["| kind | stream | class | fields |", "|---|---|---|---|"]
    classes: tuple[type[Event], ...] = (*_COMMITTED, *_LIVE.values(), Gap)
    for cls in classes:
        base = _base_fields(CommittedEvent if issubclass(cls, CommittedEvent) else LiveEvent)
        fields = ", ".join(f"`{f.name}`" for f in dataclasses.fields(cls) if f.name not in base)
        rows.append(f"| `{cls.KIND}` | {cls.STREAM} | `{cls.__name__}` | {fields or '-'} |")
    return "\n".join(rows)
