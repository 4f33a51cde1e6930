"""Exporters on the event stream: a pandas table of events, a Chrome/Perfetto trace of a run.

* :func:`events_frame` turns a journal (its committed stream, rebuilt by
  :func:`~workbench.events_from_journal`) or a list of events a subscriber collected into a
  ``pandas.DataFrame`` with one row per event and typed columns. pandas is optional:
  ``pip install 'workbench[pandas]'``.
* :func:`export_trace` writes a journal as trace-event JSON (the "JSON Object Format" that
  ui.perfetto.dev and chrome://tracing open): one track per agent, a run track and an engine
  track on a logical clock (the journal holds no wall-clock time), plus, given the live
  ``infer_batch`` events of the same run, measured queue/prefill/decode spans on a wall-clock
  timeline of their own.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from workbench._events import (
    EVENT_KINDS,
    AgentStepped,
    BatchRan,
    CommittedEvent,
    EngineWarned,
    Event,
    FaultRaised,
    InferDone,
    LiveEvent,
    LogLine,
    MessageSent,
    RunStarted,
    StepAbandoned,
    StepRunning,
    StepStarted,
    UserMessage,
    events_from_journal,
)
from workbench._journal import read_journal
from workbench._records import RunHeader

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MAX_TRACE_EVENTS", "STEP_US", "TraceExport", "events_frame", "export_trace"]

STEP_US = 1000
"""Logical clock of :func:`export_trace`: step ``t`` spans ``[(t + 1) ms, (t + 2) ms)``
(1,000 µs per step; what happened before the first step lies in ``[0, 1 ms)``)."""

MAX_TRACE_EVENTS = 500_000
"""The most trace events (metadata aside) :func:`export_trace` writes by default. Past it
the trace ends with the last step that fits, says so with a global instant event
``trace truncated`` and in ``otherData``, and :class:`TraceExport` counts what was left out."""

PREVIEW_CHARS = 200
"""Payloads and infer texts appear in a trace's args as JSON text cut to this length (logs
get 1,000 characters); agent state is left out. The journal holds everything."""


@runtime_checkable
class _HasPath(Protocol):
    @property
    def path(self) -> str: ...


JournalSource = str | os.PathLike[str] | _HasPath
"""A journal path, or an object with a ``path`` (``run.journal``, ``wb.read_journal(...)``)."""


def _journal_path(source: JournalSource) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    return str(source.path)


def plain(value: Any) -> Any:
    """A deep, mutable copy of event data: read-only mappings become dicts, tuples lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


# --- pandas ------------------------------------------------------------------------------

def _pandas() -> Any:
    try:
        import pandas
    except ImportError as exc:
        raise ImportError("events_frame needs pandas, an optional dependency: "
                          "pip install 'workbench[pandas]'", name="pandas") from exc
    return pandas


def _events_of(source: JournalSource | Iterable[Event]) -> list[Event]:
    if isinstance(source, Event):
        raise TypeError("events_frame takes a journal path or a sequence of events, "
                        "not one event: wrap it in a list")
    if isinstance(source, str | os.PathLike | _HasPath):
        return list(events_from_journal(_journal_path(source)))
    events = list(source)
    for i, e in enumerate(events):
        if not isinstance(e, Event):
            raise TypeError(f"events_frame: item {i} is a {type(e).__name__}, not an event")
    return events


def events_frame(source: JournalSource | Iterable[Event]) -> pd.DataFrame:
    """One row per event, in the order given, with typed columns.

    ``source`` is a journal (a path, ``run.journal`` or a read journal: its committed stream
    as :func:`~workbench.events_from_journal` rebuilds it) or events a subscriber collected,
    committed and live mixed. Columns:

    ========  ================  ===========================================================
    kind      category          the event kind (categories: every kind, ``EVENT_KINDS``)
    stream    category          ``committed`` or ``live``
    step      int64             the step (-1 before the first)
    agent     string            the agent it concerns, ``<NA>`` when none
    index     Int64             the record's index in the journal (-1: a run control such
                                as ``run_finished``); ``<NA>`` for live events
    offset    Int64             the record's byte offset (-1 likewise); ``<NA>`` live
    part      Int64             the event's place among its record's events; ``<NA>`` live
    seq       Int64             the live sequence number; ``<NA>`` for committed events
    time      float64           ``time.monotonic()`` when sent (0.0 rebuilt from a journal)
    data      object            the kind's own fields as a plain dict (lists, not tuples)
    ========  ================  ===========================================================

    A message's own ``seq`` (the sender's counter) is in ``data``. Raises an ``ImportError``
    naming ``pip install 'workbench[pandas]'`` without pandas, ``JournalCorrupt`` for a
    damaged journal and ``TypeError`` for anything else than events in a sequence.
    """
    pd = _pandas()
    events = _events_of(source)
    seen = dict.fromkeys(e.kind for e in events)
    kinds = [*EVENT_KINDS, *(k for k in seen if k not in EVENT_KINDS)]

    def committed(name: str) -> list[int | None]:
        return [getattr(e, name) if isinstance(e, CommittedEvent) else None for e in events]

    return pd.DataFrame({
        "kind": pd.Categorical([e.kind for e in events], categories=kinds),
        "stream": pd.Categorical([e.STREAM for e in events],
                                 categories=["committed", "live"]),
        "step": pd.Series([e.step for e in events], dtype="int64"),
        "agent": pd.Series([e.agent for e in events], dtype="string"),
        "index": pd.Series(committed("index"), dtype="Int64"),
        "offset": pd.Series(committed("offset"), dtype="Int64"),
        "part": pd.Series(committed("part"), dtype="Int64"),
        "seq": pd.Series([e.seq if isinstance(e, LiveEvent) else None for e in events],
                         dtype="Int64"),
        "time": pd.Series([float(e.time) for e in events], dtype="float64"),
        "data": pd.Series([plain(e.data) for e in events], dtype=object),
    })


# --- trace-event JSON --------------------------------------------------------------------

@dataclass(frozen=True)
class TraceExport:
    """What :func:`export_trace` wrote."""

    path: Path
    events: int  # trace events written, metadata included
    steps: int  # journaled steps shown
    dropped: int  # trace events left out past max_events (0: the trace is complete)


_STEP_NS = STEP_US * 1000
_RUN_PID, _LIVE_PID = 1, 2
_RUN_TID, _ENGINE_TID, _FIRST_AGENT_TID = 1, 2, 3


def _us(ns: int) -> float:
    return ns / 1000


def _preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    text = value if isinstance(value, str) else json.dumps(plain(value), sort_keys=True,
                                                           ensure_ascii=False)
    return text if len(text) <= limit else text[:limit - 1] + "…"


class _Trace:
    """Trace events grouped by step (the unit kept or dropped when the trace is bounded)."""

    def __init__(self) -> None:
        self.meta: list[dict[str, Any]] = []
        self.by_step: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self.tids: dict[tuple[int, str], int] = {}
        self._last_end: dict[tuple[int, int], int] = {}

    def process(self, pid: int, name: str) -> None:
        self.meta += [
            {"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "ts": 0,
             "args": {"name": name}},
            {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "ts": 0,
             "args": {"sort_index": pid}}]

    def thread(self, pid: int, tid: int, name: str) -> None:
        self.meta += [
            {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "ts": 0,
             "args": {"name": name}},
            {"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid, "ts": 0,
             "args": {"sort_index": tid}}]

    def agent_tid(self, pid: int, agent: str) -> int:
        key = (pid, agent)
        if key not in self.tids:
            tid = _FIRST_AGENT_TID + sum(1 for p, _ in self.tids if p == pid)
            self.tids[key] = tid
            self.thread(pid, tid, f"agent {agent}" if pid == _RUN_PID
                        else f"agent {agent}: infer requests")
        return self.tids[key]

    def span(self, step: int, pid: int, tid: int, name: str, start: int, end: int,
             cat: str, args: Mapping[str, Any]) -> None:
        self.by_step[step].append({"ph": "X", "name": name, "cat": cat, "pid": pid,
                                   "tid": tid, "ts": _us(start),
                                   "dur": _us(max(0, end - start)), "args": dict(args)})

    def sequential(self, step: int, pid: int, tid: int, name: str, start: int, end: int,
                   cat: str, args: Mapping[str, Any]) -> None:
        """A span on a track of back-to-back spans: clamped to start after the last one."""
        start = max(start, self._last_end.get((pid, tid), start))
        end = max(start, end)
        self._last_end[(pid, tid)] = end
        self.span(step, pid, tid, name, start, end, cat, args)

    def instant(self, step: int, pid: int, tid: int, name: str, at: int, scope: str,
                cat: str, args: Mapping[str, Any]) -> None:
        self.by_step[step].append({"ph": "i", "name": name, "cat": cat, "pid": pid,
                                   "tid": tid, "ts": _us(at), "s": scope,
                                   "args": dict(args)})


def _step_ns(step: int) -> int:
    return (step + 1) * _STEP_NS


# within a step (offsets from its start, in ns): agents' spans, then the engine's region
_AGENT_FROM, _AGENT_TO = 20_000, 980_000
_ENGINE_FROM, _ENGINE_TO = 100_000, 900_000
_SENT_AT, _FAULT_AT, _USER_AT = 970_000, 975_000, 990_000


def derived_batches(agents: Sequence[str], infers: Mapping[str, list[InferDone]],
                     max_batch: int) -> list[list[InferDone]]:
    """The step's infer calls grouped as the barrier batches them: round r holds each
    agent's r-th call (the barrier releases once every running agent waits in infer), in
    agent order, chunked by max_batch."""
    rounds: list[list[InferDone]] = []
    for agent in agents:
        for r, call in enumerate(infers.get(agent, ())):
            if r == len(rounds):
                rounds.append([])
            rounds[r].append(call)
    size = max(1, max_batch)
    return [rnd[i:i + size] for rnd in rounds for i in range(0, len(rnd), size)]


def reached_engine(e: InferDone) -> bool:
    # a malformed request or an exhausted token budget is answered without the barrier
    return e.provider is not None or e.error is None


def _logical(trace: _Trace, header: RunHeader, events: Sequence[CommittedEvent]) -> None:
    trace.process(_RUN_PID, f"workbench run (logical clock: {STEP_US} µs per step)")
    trace.thread(_RUN_PID, _RUN_TID, "run: steps and user messages")
    trace.thread(_RUN_PID, _ENGINE_TID, "engine: infer calls in derived batches")
    for spec in header.agents:
        trace.agent_tid(_RUN_PID, spec.name)
    by_step: dict[int, list[CommittedEvent]] = defaultdict(list)
    for e in events:
        by_step[e.step].append(e)
    for step in sorted(by_step):
        _logical_step(trace, header, step, by_step[step])


def _logical_step(trace: _Trace, header: RunHeader, step: int,
                  events: Sequence[CommittedEvent]) -> None:
    t0 = _step_ns(step)
    started = next((e for e in events if isinstance(e, StepStarted)), None)
    agents = list(started.agents) if started is not None else []
    infers: dict[str, list[InferDone]] = defaultdict(list)
    for e in events:
        if isinstance(e, RunStarted):
            trace.instant(step, _RUN_PID, _RUN_TID, "run started", 0, "g", "run",
                          {"seed": e.seed, "policy": e.policy, "agents": list(e.agents)})
        elif isinstance(e, UserMessage):
            trace.instant(step, _RUN_PID, _RUN_TID, f"user message → {e.to}",
                          t0 + _USER_AT, "t", "message",
                          {"to": e.to, "seq": e.seq, "payload": _preview(e.payload)})
        elif isinstance(e, EngineWarned):
            trace.instant(step, _RUN_PID, _ENGINE_TID, "engine warning", t0 + _USER_AT,
                          "t", "warning", {"warning": plain(e.warning)})
        elif isinstance(e, InferDone) and e.agent is not None and reached_engine(e):
            infers[e.agent].append(e)
        elif isinstance(e, StepStarted):
            trace.span(step, _RUN_PID, _RUN_TID, f"step {step}", t0, t0 + _STEP_NS, "step",
                       {"step": step, "agents": list(e.agents), "inbox": list(e.inbox)})
    for calls in infers.values():
        calls.sort(key=lambda c: c.call)
    where = _engine_track(trace, step, t0, agents, infers, header.max_batch)
    for agent in agents:
        _agent_step(trace, step, t0, agent, [e for e in events if e.agent == agent], where)


def _engine_track(trace: _Trace, step: int, t0: int, agents: Sequence[str],
                  infers: Mapping[str, list[InferDone]],
                  max_batch: int) -> dict[tuple[str, int], tuple[int, int]]:
    """Batch spans with their requests nested; returns (agent, call) -> (start, end)."""
    batches = derived_batches(agents, infers, max_batch)
    where: dict[tuple[str, int], tuple[int, int]] = {}
    if not batches:
        return where
    width = (_ENGINE_TO - _ENGINE_FROM) // len(batches)
    for b, batch in enumerate(batches):
        start = t0 + _ENGINE_FROM + b * width
        end = start + width - width // 20
        members = [str(c.agent) for c in batch]
        trace.span(step, _RUN_PID, _ENGINE_TID, f"batch {b} ({len(batch)})", start, end,
                   "batch", {"step": step, "batch": b, "agents": members,
                             "size": len(batch), "derived": True})
        share = (end - start) // len(batch)
        for i, call in enumerate(batch):
            s = start + i * share
            where[(str(call.agent), call.call)] = (s, s + share)
            trace.span(step, _RUN_PID, _ENGINE_TID, f"{call.agent} infer #{call.call}", s,
                       s + share, "infer",
                       {"agent": call.agent, "call": call.call, "batch": b,
                        "tokens": call.tokens, "finish_reason": call.finish_reason,
                        "provider": call.provider, "error": call.error,
                        "text": _preview(call.text), "batch_members": members})
    return where


def _agent_step(trace: _Trace, step: int, t0: int, agent: str,
                events: Sequence[CommittedEvent],
                where: Mapping[tuple[str, int], tuple[int, int]]) -> None:
    tid = trace.agent_tid(_RUN_PID, agent)
    result = next((e for e in events if isinstance(e, AgentStepped)), None)
    infers = [e for e in events if isinstance(e, InferDone)]
    trace.span(step, _RUN_PID, tid, result.status if result is not None else "step",
               t0 + _AGENT_FROM, t0 + _AGENT_TO, "agent",
               {"step": step, "agent": agent,
                "status": result.status if result is not None else None,
                "messages": result.messages if result is not None else 0,
                "fault": result.fault if result is not None else None,
                "infer_calls": len(infers), "tokens": sum(e.tokens for e in infers)})
    cursor = t0 + _AGENT_FROM
    calls = sorted((e for e in events if isinstance(e, InferDone | LogLine)),
                   key=lambda e: e.call)
    for e in calls:
        if isinstance(e, LogLine):
            trace.instant(step, _RUN_PID, tid, "log", cursor, "t", "log",
                          {"call": e.call, "text": _preview(e.text, 1000)})
        elif (e.agent, e.call) in where:
            start, cursor = where[(str(e.agent), e.call)]
            trace.span(step, _RUN_PID, tid, f"infer #{e.call}", start, cursor, "infer",
                       {"call": e.call, "tokens": e.tokens,
                        "finish_reason": e.finish_reason, "error": e.error})
        else:
            trace.instant(step, _RUN_PID, tid, "infer refused", cursor, "t", "infer",
                          {"call": e.call, "error": e.error})
    for ev in events:
        if isinstance(ev, MessageSent):
            trace.instant(step, _RUN_PID, tid, f"message → {ev.to}", t0 + _SENT_AT, "t",
                          "message",
                          {"to": ev.to, "seq": ev.seq, "payload": _preview(ev.payload)})
        elif isinstance(ev, FaultRaised):
            trace.instant(step, _RUN_PID, tid, f"fault {ev.fault_kind}: {agent}",
                          t0 + _FAULT_AT, "p", "fault",
                          {"agent": agent, "kind": ev.fault_kind, "detail": ev.detail,
                           "data": _preview(ev.fault_data)})


def _abandoned(live: Sequence[LiveEvent]) -> set[int]:
    """seq of the batch events of steps thrown away (before a later step_running)."""
    out: set[int] = set()
    open_batches: dict[int, list[int]] = defaultdict(list)
    for e in live:
        if isinstance(e, StepRunning):
            open_batches.pop(e.step, None)
        elif isinstance(e, BatchRan):
            open_batches[e.step].append(e.seq)
        elif isinstance(e, StepAbandoned):
            out.update(open_batches.pop(e.step, []))
    return out


class RequestSpan(NamedTuple):
    """One request's queue, prefill or decode span within a batch (seconds, monotonic)."""

    agent: str
    kind: str
    t0: float
    t1: float
    tokens: int
    seconds: float


def _padded(values: Sequence[Any], n: int, fill: Any) -> list[Any]:
    return list(values[:n]) + [fill] * (n - len(values))


def request_spans(e: BatchRan, start: float) -> list[RequestSpan]:
    """The spans of each request of the batch that ended with ``e`` and began at ``start``:
    queue (before the batch), prefill (one request after another), decode (together, after
    every prefill), in the order queue, prefill, decode per request."""
    n = len(e.agents)
    pre, dec, queue = (_padded(v, n, 0.0) for v in (e.prefill_s, e.decode_s, e.queue_s))
    tokens = _padded(e.tokens, n, 0)
    out: list[RequestSpan] = []
    prefilled, decoding = start, start + sum(pre)
    for i, agent in enumerate(e.agents):
        out.append(RequestSpan(agent, "queue", start - queue[i], start, tokens[i], queue[i]))
        out.append(RequestSpan(agent, "prefill", prefilled, prefilled + pre[i], tokens[i],
                               pre[i]))
        prefilled += pre[i]
    out += [RequestSpan(agent, "decode", decoding, decoding + dec[i], tokens[i], dec[i])
            for i, agent in enumerate(e.agents)]
    return out


def _measured(trace: _Trace, header: RunHeader, live: Iterable[Event]) -> int:
    """The live infer_batch events on a wall-clock timeline; returns how many batches."""
    events = sorted((e for e in live if isinstance(e, LiveEvent)), key=lambda e: e.seq)
    ends = [e for e in events if isinstance(e, BatchRan) and e.phase == "end"]
    if not ends:
        return 0
    thrown = _abandoned(events)
    started: dict[tuple[int, int], float] = {}
    spans: list[tuple[BatchRan, float]] = []
    for e in events:
        if isinstance(e, BatchRan) and e.phase == "start":
            started[(e.step, e.batch)] = e.time
        elif isinstance(e, BatchRan) and e.phase == "end":
            guess = e.time - sum(e.prefill_s) - max(e.decode_s, default=0.0)
            spans.append((e, min(e.time, started.pop((e.step, e.batch), guess))))
    origin = min(start - max(e.queue_s, default=0.0) for e, start in spans)

    def ns(t: float) -> int:
        return round((t - origin) * 1e9)

    trace.process(_LIVE_PID, "inference, wall clock (measured: live infer_batch events)")
    trace.thread(_LIVE_PID, _ENGINE_TID, "engine: batches")
    for spec in header.agents:
        trace.agent_tid(_LIVE_PID, spec.name)
    for e, start in spans:
        begin, end = ns(start), ns(e.time)
        info = {"step": e.step, "batch": e.batch, "provider": e.provider}
        if e.seq in thrown:
            info["abandoned"] = True
        trace.sequential(e.step, _LIVE_PID, _ENGINE_TID, f"step {e.step} batch {e.batch}",
                         begin, end, "batch", {**info, "agents": list(e.agents),
                                               "tokens": _padded(e.tokens, len(e.agents), 0)})
        for r in request_spans(e, start):
            trace.sequential(e.step, _LIVE_PID, trace.agent_tid(_LIVE_PID, r.agent), r.kind,
                             ns(r.t0), ns(r.t1) if r.kind == "queue" else min(end, ns(r.t1)),
                             r.kind, {**info, "agent": r.agent, "tokens": r.tokens,
                                      "seconds": r.seconds})
    return len(spans)


def export_trace(journal: JournalSource, path: str | os.PathLike[str], *,
                 live: Iterable[Event] | None = None,
                 max_events: int = MAX_TRACE_EVENTS) -> TraceExport:
    """Write the run in ``journal`` as Chrome/Perfetto trace-event JSON at ``path``.

    The file is the trace-event "JSON Object Format" (``{"traceEvents": [...],
    "displayTimeUnit": "ms", "otherData": {...}}``, times in microseconds): open it in
    ui.perfetto.dev or chrome://tracing. Process 1 is the journal on a logical clock (wall
    time is never journaled): step ``t`` spans ``[(t + 1) ms, (t + 2) ms)`` (:data:`STEP_US`).
    Its tracks:

    * ``run``: one span per step (agents, inbox), user messages as instant events;
    * one per agent: its step as a complete event named by its status (args: messages,
      fault, infer calls, tokens), its infer calls nested, logs and sent messages as
      thread-scoped instants, faults as process-scoped instants;
    * ``engine``: one span per infer call (tokens, finish reason, provider, text) nested in
      the span of its batch. Batch membership is **derived**, not journaled: the step's
      calls grouped as the inference barrier does (each agent's r-th call in round r, in
      agent order, chunked by the header's ``max_batch``). Engine warnings are instants here.

    ``live``: events a subscriber collected during the same run (any kinds; the
    ``infer_batch`` ones are used). They add process 2 on a wall clock (seconds from the
    first queued request): per batch a span, and per agent its requests' measured queue
    wait, prefill and decode. The durations are measured; their placement is laid out
    (prefills back to back from the batch start, decodes from the end of the prefills,
    clamped to the batch). Batches of a step that was then abandoned say ``abandoned``.

    Payloads and texts are cut to :data:`PREVIEW_CHARS` characters; agent state is left out.
    At most ``max_events`` trace events (metadata aside) are written, whole steps at a
    time; past that the trace says ``trace truncated`` (see :data:`MAX_TRACE_EVENTS`).
    Raises ``JournalCorrupt`` for a damaged journal, ``ValueError`` for an empty one.
    """
    source = _journal_path(journal)
    records = read_journal(source).typed
    header = records[0] if records else None
    if not isinstance(header, RunHeader):
        raise ValueError(f"{source} has no run header: nothing to export")
    trace = _Trace()
    _logical(trace, header, events_from_journal(source))
    batches = _measured(trace, header, live) if live is not None else 0
    kept: list[dict[str, Any]] = []
    steps = 0
    for step in sorted(trace.by_step):
        chunk = trace.by_step[step]
        if len(kept) + len(chunk) > max_events:
            break
        kept += chunk
        steps += step >= 0
    total = sum(len(v) for v in trace.by_step.values())
    dropped = total - len(kept)
    other: dict[str, Any] = {
        "generator": "workbench export_trace", "journal": Path(source).name,
        "seed": header.seed, "policy": str(header.policy.get("name")),
        "agents": len(header.agents), "max_batch": header.max_batch,
        "model": str((header.engine or {}).get("model", "none")),
        "clock": f"pid {_RUN_PID}: logical, step t at (t + 1) ms; pid {_LIVE_PID}: wall clock "
                 "(live infer_batch events)",
        "batches": "derived from the journal (barrier rounds in agent order, chunked by "
                   "max_batch)", "live_batches": batches}
    if header.parent is not None:
        other["parent"] = _preview(header.parent)
    if dropped:
        last = max((e["ts"] for e in kept), default=0.0)
        kept.append({"ph": "i", "name": "trace truncated", "cat": "trace", "pid": _RUN_PID,
                     "tid": _RUN_TID, "ts": last, "s": "g",
                     "args": {"dropped": dropped, "max_events": max_events}})
        other["truncated"] = (f"{dropped} of {total} trace events left out past "
                              f"max_events={max_events}")
    document = {"traceEvents": [*trace.meta, *kept], "displayTimeUnit": "ms",
                "otherData": other}
    out = Path(path)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(document, f, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise
    return TraceExport(out, len(document["traceEvents"]), steps, dropped)
