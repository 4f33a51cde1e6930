"""The view document: what the notebook views render, built from a run's events.

The format is in docs/views.md. :class:`ViewDoc` folds the committed stream (authoritative:
steps, results, messages, faults) and the live stream (running agents, requests waiting on
the model, tokens, measured timings) into one JSON document, and hands out deltas since the
last one it handed out. Everything it keeps is bounded: step details beyond
``MAX_DETAIL_BYTES`` are trimmed oldest first (statuses stay), steps beyond ``MAX_STEPS`` and
spans beyond ``MAX_SPANS`` are dropped oldest first, long texts and large values are cut;
the document counts what it left out. A journal alone gives a document on a logical clock
(one unit per step), with no model and no run.
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from workbench._events import (
    AgentStepped,
    AgentUsage,
    BatchRan,
    CommittedEvent,
    EngineWarned,
    Event,
    FaultRaised,
    InferDone,
    InferQueued,
    LogLine,
    MessageSent,
    Rewound,
    RunFinished,
    RunStarted,
    StepAbandoned,
    StepCommitted,
    StepRunning,
    StepStarted,
    TokenStreamed,
    UserMessage,
    committed_events,
)
from workbench._export import derived_batches, plain, reached_engine, request_spans
from workbench._journal import read_journal
from workbench._records import RunHeader, committed

__all__ = ["FORMAT", "ViewDoc", "doc_from_journal", "header_json", "journal_title"]

FORMAT = 1
MAX_STEPS = 5_000
"""Steps a document keeps; older ones are dropped (``trimmed.dropped_steps``)."""
MAX_SPANS = 20_000
"""Timeline spans a document keeps; older ones are dropped (``trimmed.spans``)."""
MAX_DETAIL_BYTES = 4 * 1024 * 1024
"""Bytes of step details (states, messages, texts) a document keeps; past it the oldest
steps lose their details and keep their statuses (``trimmed.steps``)."""
MAX_TEXT_CHARS = 2_000
"""Characters kept of one text (an inference result, a log line, a JSON string)."""
MAX_VALUE_BYTES = 64 * 1024
"""JSON bytes kept of one value (a state, a payload); a larger one is replaced by a note."""
MAX_ITEMS = 200
"""Messages, log lines or inference results kept per agent per step."""


def _text(value: Any) -> str:
    s = str(value)
    if len(s) <= MAX_TEXT_CHARS:
        return s
    return f"{s[:MAX_TEXT_CHARS]}… ({len(s) - MAX_TEXT_CHARS} more characters)"


def _value(value: Any) -> tuple[Any, bool]:
    """A JSON value as the document holds it, and whether it was cut."""
    if value is None or isinstance(value, bool | int | float):
        return value, False
    if isinstance(value, str) and len(value) <= MAX_TEXT_CHARS:
        return value, False
    value = plain(value)
    size = len(json.dumps(value, ensure_ascii=False, default=str))
    if size > MAX_VALUE_BYTES:
        return (f"<{size} bytes of JSON, too large for the view: run.state_of() or the "
                f"journal has it>", True)
    if size <= MAX_TEXT_CHARS:  # no string in it can be longer than its JSON
        return value, False
    cut = False

    def clip(v: Any) -> Any:
        nonlocal cut
        if isinstance(v, str) and len(v) > MAX_TEXT_CHARS:
            cut = True
            return _text(v)
        if isinstance(v, dict):
            return {k: clip(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clip(x) for x in v]
        return v

    return clip(value), cut


def header_json(header: RunHeader) -> dict[str, Any]:
    """The document's ``header`` from a run header record."""
    engine = header.engine
    agents = []
    for a in header.agents:
        state, _ = _value(a.state)
        agents.append({"name": a.name, "kind": str(a.identity.get("kind", "?")),
                       "caps": list(a.capabilities), "fuel": a.limits.get("fuel"),
                       "memory": a.limits.get("memory_bytes"), "state": state})
    return {"seed": header.seed, "policy": str(header.policy.get("name", "?")),
            "max_batch": header.max_batch,
            "engine": None if engine is None else {
                "model": str(engine.get("model", "?")),
                "provider": str(engine.get("provider", "?"))},
            "agents": agents, "channels": [list(c) for c in header.channels]}


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, default=str))


class ViewDoc:
    """The view document of one run, fed event by event (not thread-safe: one feeder).

    ``source`` is "live" (timings measured from the events' clock) or "journal" (a logical
    clock); ``title`` names the journal.
    """

    def __init__(self, header: RunHeader | None, *, source: str = "live",
                 title: str = "") -> None:
        self.source = source
        self.title = title
        self.clock = "measured" if source == "live" else "logical"
        self.header: dict[str, Any] = header_json(header) if header is not None else {
            "seed": 0, "policy": "?", "max_batch": 1, "engine": None, "agents": [],
            "channels": []}
        self.seq = 0
        self.status: dict[str, Any] = {"state": "idle", "step": -1, "reason": None}
        self.live: dict[str, Any] = {"running": [], "waiting": [], "streaming": {}}
        self.trimmed = {"steps": 0, "spans": 0, "dropped_steps": 0}
        self.warnings: list[Any] = []  # engine warnings before the first step
        self.reset = False  # the document changed in a way deltas cannot say (rewind)
        self._steps: collections.deque[dict[str, Any]] = collections.deque()
        self._sizes: collections.deque[int] = collections.deque()  # detail bytes per step
        self._detail_bytes = 0
        self._untrimmed = 0  # index in _steps of the oldest step that still has details
        self._spans: collections.deque[dict[str, Any]] = collections.deque()
        self._new_steps: list[dict[str, Any]] = []
        self._new_spans: list[dict[str, Any]] = []
        self._changed = False
        self._current: dict[str, Any] | None = None
        self._infers: dict[str, list[InferDone]] = {}
        self._sends: list[dict[str, Any]] = []
        self._t0: float | None = None
        self._step_began: dict[int, float] = {}
        self._batch_began: dict[tuple[int, int], float] = {}
        self._usage: dict[tuple[int, str], dict[str, int]] = {}
        self._commit_times: dict[int, float] = {}  # from preload()

    # -- input ---------------------------------------------------------------------------

    def preload(self, timings: Sequence[Event], commit_times: Mapping[int, float]) -> None:
        """Timings the run kept from before this document began (EventBus.timings): the
        steps that then arrive from the journal get their measured spans and times."""
        self._commit_times = dict(commit_times)
        for e in timings:
            self.apply(e)

    def set_header(self, header: RunHeader) -> None:
        self.header = header_json(header)
        self._changed = True

    def set_status(self, state: str, reason: str | None = None) -> None:
        if self.status["state"] != state or reason is not None:
            self.status = {**self.status, "state": state,
                           "reason": reason if reason is not None else self.status["reason"]}
            self._changed = True

    def apply(self, event: Event) -> None:
        """Fold one event in (committed events in journal order; live ones as they come)."""
        if self._t0 is None and event.time > 0 and self.clock == "measured":
            self._t0 = event.time
        if isinstance(event, CommittedEvent):
            self._committed(event)
        else:
            self._live(event)

    def _committed(self, e: CommittedEvent) -> None:
        if isinstance(e, RunStarted):
            return
        if isinstance(e, UserMessage):
            payload, _ = _value(e.payload)
            if len(self._sends) < MAX_ITEMS:
                self._sends.append({"to": e.to, "seq": e.seq, "payload": payload})
        elif isinstance(e, StepStarted):
            self._current = {"t": e.step, "time": None, "ran": list(e.agents),
                             "sends": self._sends, "results": {}, "warnings": []}
            self._sends, self._infers = [], {}
        elif isinstance(e, EngineWarned):
            warning, _ = _value(e.warning)
            if self._current is not None and self._current["t"] == e.step:
                self._current["warnings"].append(warning)
            elif len(self.warnings) < MAX_ITEMS:
                self.warnings.append(warning)
                self._changed = True
        elif isinstance(e, StepCommitted):
            self._commit(e)
        elif isinstance(e, Rewound):
            self._rewind(e.step)
        elif isinstance(e, RunFinished):
            self.status = {"state": "finished", "step": self.status["step"],
                           "reason": e.reason}
            self._changed = True
        elif e.agent is not None and self._current is not None:
            self._result_event(e, self._result(e.agent))

    def _result(self, agent: str) -> dict[str, Any]:
        assert self._current is not None
        results: dict[str, Any] = self._current["results"]
        if agent not in results:
            results[agent] = {"status": "ready", "fault": None, "state": None, "out": [],
                              "logs": [], "infer": [], "tokens": 0, "requests": 0,
                              "fuel": None, "memory": None, "trimmed": False}
        return results[agent]  # type: ignore[no-any-return]

    def _result_event(self, e: CommittedEvent, r: dict[str, Any]) -> None:
        if isinstance(e, AgentStepped):
            state, cut = _value(e.state)
            r.update(status=e.status, state=state, tokens=e.tokens, requests=e.requests)
            r["trimmed"] = r["trimmed"] or cut
        elif isinstance(e, FaultRaised):
            data, _ = _value(e.fault_data)
            r["fault"] = {"kind": e.fault_kind, "detail": _text(e.detail), "data": data}
        elif isinstance(e, MessageSent):
            payload, cut = _value(e.payload)
            r["trimmed"] = r["trimmed"] or cut
            if len(r["out"]) < MAX_ITEMS:
                r["out"].append({"to": e.to, "seq": e.seq, "payload": payload})
        elif isinstance(e, LogLine):
            if len(r["logs"]) < MAX_ITEMS:
                r["logs"].append(_text(e.text))
        elif isinstance(e, InferDone):
            self._infers.setdefault(str(e.agent), []).append(e)
            if len(r["infer"]) < MAX_ITEMS:
                r["infer"].append({"call": e.call, "text": _text(e.text), "tokens": e.tokens,
                                   "finish": e.finish_reason, "provider": e.provider,
                                   "error": None if e.error is None else _text(e.error)})

    def _commit(self, e: StepCommitted) -> None:
        step = self._current
        self._current = None
        if step is None or step["t"] != e.step:
            return  # its start was before this document began (cannot happen from t=0)
        t = e.step
        for agent, r in step["results"].items():
            usage = self._usage.pop((t, agent), None)
            if usage is not None:
                r["fuel"], r["memory"] = usage.get("fuel"), usage.get("memory")
        when = e.time if e.time > 0 else self._commit_times.pop(t, 0.0)
        if self.clock == "measured" and when > 0 and self._t0 is not None:
            step["time"] = round(when - self._t0, 6)
            began = self._step_began.pop(t, None)
            if began is not None:
                for agent in step["ran"]:
                    self._span(agent, "step", began, when, t)
        elif self.clock == "logical":
            self._logical_spans(step)
        self._steps.append(step)
        size = _size(step)
        self._sizes.append(size)
        self._detail_bytes += size
        self._new_steps.append(step)
        self.status = {**self.status, "step": t}
        self.live = {"running": [], "waiting": [], "streaming": {}}
        self._changed = True
        self._bound_steps()

    def _logical_spans(self, step: dict[str, Any]) -> None:
        t = step["t"]
        for agent in step["ran"]:
            self._span_at(agent, "step", t + 0.02, t + 0.98, t)
        batches = derived_batches(step["ran"], self._infers, int(self.header["max_batch"]))
        n = len(batches)
        for b, batch in enumerate(batches):
            served = [c for c in batch if reached_engine(c)]
            if not served:
                continue
            t0 = t + 0.1 + 0.8 * b / n
            t1 = t + 0.1 + 0.8 * (b + 1) / n - 0.01
            provider = served[0].provider
            self._span_at("engine", "batch", t0, t1, t, batch=b, provider=provider,
                          tokens=sum(c.tokens for c in served))
            for c in served:
                self._span_at(str(c.agent), "decode", t0, t1, t, agent=c.agent, batch=b,
                              provider=c.provider, tokens=c.tokens)

    def _rewind(self, step: int) -> None:
        while self._steps and self._steps[-1]["t"] > step:
            self._steps.pop()
            self._detail_bytes -= self._sizes.pop()
        self._untrimmed = min(self._untrimmed, len(self._steps))
        self._spans = collections.deque(s for s in self._spans if s["step"] <= step)
        self._current, self._sends, self._infers = None, [], {}
        self._new_steps, self._new_spans = [], []
        self.status = {"state": self.status["state"], "step": step, "reason": "rewound"}
        self.live = {"running": [], "waiting": [], "streaming": {}}
        self.reset = True

    def _live(self, e: Event) -> None:
        if isinstance(e, StepRunning):
            self._step_began[e.step] = e.time
            if len(self._step_began) > MAX_SPANS:  # steps that never committed
                self._step_began.pop(next(iter(self._step_began)))
            self.live = {"running": list(e.agents), "waiting": [], "streaming": {}}
        elif isinstance(e, InferQueued) and e.agent is not None:
            if e.agent not in self.live["waiting"]:
                self.live["waiting"].append(e.agent)
        elif isinstance(e, BatchRan):
            self._batch(e)
        elif isinstance(e, TokenStreamed) and e.agent is not None:
            streaming = self.live["streaming"]
            streaming[e.agent] = streaming.get(e.agent, 0) + 1
        elif isinstance(e, AgentUsage) and e.agent is not None:
            self._usage[(e.step, e.agent)] = {"fuel": e.fuel, "memory": e.memory}
            if len(self._usage) > 100_000:  # results that never committed
                self._usage.pop(next(iter(self._usage)))
        elif isinstance(e, StepAbandoned):
            self._spans = collections.deque(s for s in self._spans if s["step"] != e.step)
            self._new_spans = [s for s in self._new_spans if s["step"] != e.step]
            self._current = None
            self.live = {"running": [], "waiting": [], "streaming": {}}
            self.reset = True
        else:
            return
        self._changed = True

    def _batch(self, e: BatchRan) -> None:
        key = (e.step, e.batch)
        if e.phase == "start":
            self._batch_began[key] = e.time
            if len(self._batch_began) > 1024:
                self._batch_began.pop(next(iter(self._batch_began)))
            return
        began = self._batch_began.pop(key, e.time - sum(e.prefill_s) - max(e.decode_s,
                                                                          default=0.0))
        engine = self.header.get("engine") or {}
        fallback = bool(e.provider and engine.get("provider")
                        and e.provider != engine.get("provider"))
        self._span("engine", "batch", began, e.time, e.step, batch=e.batch,
                   provider=e.provider, tokens=sum(e.tokens), fallback=fallback)
        for r in request_spans(e, began):
            self._span(r.agent, r.kind, r.t0, min(r.t1, e.time) if r.kind != "queue" else r.t1,
                       e.step, agent=r.agent, batch=e.batch, provider=e.provider,
                       tokens=r.tokens, fallback=fallback)
        self.live["waiting"] = [a for a in self.live["waiting"] if a not in e.agents]

    def _span(self, lane: str, kind: str, t0: float, t1: float, step: int,
              **extra: Any) -> None:
        if self._t0 is None:
            return
        self._span_at(lane, kind, round(t0 - self._t0, 6), round(t1 - self._t0, 6), step,
                      **extra)

    def _span_at(self, lane: str, kind: str, t0: float, t1: float, step: int, *,
                 agent: str | None = None, batch: int | None = None,
                 provider: str | None = None, tokens: int | None = None,
                 fallback: bool = False) -> None:
        span = {"lane": lane, "kind": kind, "t0": t0, "t1": max(t0, t1), "step": step,
                "agent": agent, "batch": batch, "provider": provider, "tokens": tokens,
                "fallback": fallback}
        self._spans.append(span)
        self._new_spans.append(span)
        if len(self._spans) > MAX_SPANS:
            self._spans.popleft()
            self.trimmed["spans"] += 1
        if len(self._new_spans) > MAX_SPANS:
            del self._new_spans[0]
        self._changed = True

    def _bound_steps(self) -> None:
        while len(self._steps) > MAX_STEPS:
            self._steps.popleft()
            self._detail_bytes -= self._sizes.popleft()
            self._untrimmed = max(0, self._untrimmed - 1)
            self.trimmed["dropped_steps"] += 1
        while self._detail_bytes > MAX_DETAIL_BYTES and self._untrimmed < len(self._steps) - 1:
            i = self._untrimmed
            step = self._steps[i]
            for r in step["results"].values():
                r.update(state=None, logs=[], trimmed=True,
                         out=[{"to": m["to"], "seq": m["seq"], "payload": None}
                              for m in r["out"]],
                         infer=[{**c, "text": ""} for c in r["infer"]])
            step["sends"] = [{**m, "payload": None} for m in step["sends"]]
            size = _size(step)
            self._detail_bytes += size - self._sizes[i]
            self._sizes[i] = size
            self._untrimmed += 1
            self.trimmed["steps"] += 1
        if len(self._new_steps) > MAX_STEPS:
            self.reset = True  # too far behind for a delta: send the whole document

    # -- output --------------------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        """The whole document (its lists are fresh; their items are shared, do not edit)."""
        return {"format": FORMAT, "seq": self.seq, "source": self.source,
                "title": self.title, "clock": self.clock, "header": self.header,
                "warnings": list(self.warnings), "steps": list(self._steps),
                "spans": list(self._spans), "status": dict(self.status),
                "live": _live_copy(self.live), "trimmed": dict(self.trimmed)}

    def take_delta(self) -> dict[str, Any] | None:
        """What changed since the last delta (None: nothing), numbered by ``seq``. After a
        reset (see ``reset``) the caller sends :meth:`document` instead."""
        if not self._changed:
            return None
        self._changed = False
        self.seq += 1
        delta = {"type": "delta", "seq": self.seq, "steps": self._new_steps,
                 "spans": self._new_spans, "status": dict(self.status),
                 "live": _live_copy(self.live)}
        self._new_steps, self._new_spans = [], []
        return delta

    def take_document(self) -> dict[str, Any]:
        """The whole document, numbered as one more delta; pending deltas are folded in."""
        self._changed = False
        self.reset = False
        self.seq += 1
        self._new_steps, self._new_spans = [], []
        return self.document()

    @property
    def steps(self) -> int:
        return len(self._steps)

    @property
    def spans(self) -> int:
        return len(self._spans)


def _live_copy(live: Mapping[str, Any]) -> dict[str, Any]:
    return {"running": list(live["running"]), "waiting": list(live["waiting"]),
            "streaming": dict(live["streaming"])}


def journal_title(path: str | os.PathLike[str]) -> str:
    """How a view names a journal: its file name, with its folder when the file has the
    default name (``runs/<time>-seed<seed>/journal.wbj``)."""
    p = os.path.normpath(os.fspath(path))
    name = os.path.basename(p)
    folder = os.path.basename(os.path.dirname(p))
    return f"{folder}/{name}" if name == "journal.wbj" and folder else name


def doc_from_journal(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The view document of a journal (logical clock), with no model and no run. Raises
    JournalCorrupt / JournalError for a damaged or unreadable journal."""
    journal = read_journal(path)
    records = committed(journal.typed)
    header = records[0] if records and isinstance(records[0], RunHeader) else None
    doc = ViewDoc(header, source="journal", title=journal_title(path))
    for i, record in enumerate(records):
        for e in committed_events(record, i, journal.offsets[i]):
            doc.apply(e)
    doc.set_status("finished", doc.status["reason"])
    return doc.take_document()


def summary_line(doc: Mapping[str, Any]) -> str:
    """One line about a document, for reprs."""
    agents: Sequence[Any] = doc["header"]["agents"]
    status = doc["status"]
    return (f"{len(agents)} agents, {len(doc['steps'])} steps shown, "
            f"last step {status['step']}, {status['state']}")
