"""One bulk-synchronous step.

In step t the policy picks the runnable agents; they run concurrently, one thread each,
against a shared :class:`~workbench._hostcalls.StepHost` (the inference barrier); then their
results are validated and committed **in agent order**, never completion order. Messages sent
in step t are delivered at t+1, sorted by (sender, sequence). The step's records go to the
journal sink in one write at commit; a step that fails before commit writes nothing.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from workbench import _canonical
from workbench._bounded_step import StepWatch, timeout_fault
from workbench._events import EventBus, committed_events
from workbench._hostcalls import AgentCounters, InferSource, StepHost, journal_text
from workbench._names import not_json
from workbench._policy import AgentView, Policy
from workbench._python_agent import PythonAgent
from workbench._records import (
    AgentResult,
    Call,
    Commit,
    EngineWarning,
    OutMessage,
    Record,
    StepStart,
)
from workbench._state import RunState, apply, deliveries
from workbench._types import (
    JSON,
    Executor,
    Fault,
    FaultPolicy,
    InferenceBackend,
    Limits,
    Outgoing,
    StepRequest,
    StepResult,
    limit_fault,
)
from workbench.errors import (
    AgentCrashed,
    AgentFault,
    AgentOutputError,
    LimitExceeded,
    MemoryLimitExceeded,
    OutOfFuel,
    StepTimeout,
)

_FAULT_ERRORS: dict[str, type[AgentFault]] = {
    "out_of_fuel": OutOfFuel, "memory_limit": MemoryLimitExceeded, "timeout": StepTimeout,
    "limit": LimitExceeded, "malformed_output": AgentOutputError,
}


MAX_FAULT_DETAIL = 16_384
"""Longest fault detail journaled; longer text is cut and marked."""


class Sink(Protocol):
    """Where a step's records go: the journal writer, or replay's verifier."""

    def stage(self, record: Record) -> None: ...

    def flush(self) -> list[tuple[int, int]]: ...

    def discard_staged(self) -> None: ...


@dataclass
class AgentSlot:
    """An agent's fixed configuration within a run."""

    name: str
    executor: Executor
    initial_state: JSON
    capabilities: tuple[str, ...]
    limits: Limits
    on_fault: FaultPolicy


@dataclass
class StepReport:
    """What one step did (returned by ``run.step()``)."""

    step: int
    ran: list[str]
    faults: dict[str, Fault] = field(default_factory=dict)
    messages: int = 0

    def __repr__(self) -> str:
        faults = f", faults={sorted(self.faults)}" if self.faults else ""
        return f"<StepReport step={self.step} ran={self.ran} messages={self.messages}{faults}>"


class Scheduler:
    """Runs steps over ``slots`` (in agent order) and mutates ``state``."""

    def __init__(self, *, seed: int, policy: Policy, slots: Sequence[AgentSlot],
                 channels: set[tuple[str, str]], state: RunState, sink: Sink,
                 events: EventBus, engine: InferenceBackend | None = None,
                 max_batch: int = 8, concurrency: int = 64,
                 infer_source: Callable[[int], InferSource] | None = None,
                 wrap: Callable[[Executor], Executor] | None = None) -> None:
        self.seed = seed
        self.policy = policy
        self.slots = {s.name: s for s in slots}
        self.order = [s.name for s in slots]
        self.channels = channels
        self.state = state
        self.sink = sink
        self.events = events
        self.engine = engine
        self.max_batch = max_batch
        self.concurrency = max(1, concurrency)
        self._infer_source = infer_source
        self._wrap = wrap
        self._pool_size = min(self.concurrency, max(1, len(slots)))
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._pool_size, thread_name_prefix="workbench-agent")
        self.max_messages = {s.name: s.limits.max_messages for s in slots}
        self._warnings: list[dict[str, JSON]] = []
        self._warn_lock = threading.Lock()

    def warn(self, record: Mapping[str, JSON]) -> None:
        """Journal an engine warning with the current step (thread-safe)."""
        with self._warn_lock:
            self._warnings.append(dict(record))

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def select(self) -> tuple[list[str], int]:
        mail = {m.to for m in self.state.pending}
        views = [AgentView(n, self.state.agents[n].status, n in mail) for n in self.order]
        return self.policy.select(views, self.state.cursor)

    def step(self) -> StepReport | None:
        """Run one step. None when no agent can run (the run is quiescent or done).

        Raises AgentFault (after committing the step) for an agent whose policy is "fail",
        and the engine's error (committing nothing) if the engine failed.
        """
        selected, cursor = self.select()
        if not selected:
            return None
        t = self.state.step
        inboxes = deliveries(self.state, selected, self.max_messages)
        step_record = StepStart(t, tuple(selected), cursor,
                                tuple(len(inboxes[a]) for a in selected))
        self.events.emit("step_running", t, None, {"agents": tuple(selected)})
        try:
            results, hosts = self._run_agents(t, selected, inboxes)
        except BaseException as exc:
            self._abandoned(t, exc)
            raise
        records: list[Record] = [step_record]
        report = StepReport(t, selected)
        queued = collections.Counter(m.to for m in self.state.pending)
        queued.subtract({name: len(inboxes[name]) for name in selected})  # delivered now
        for name in selected:
            usage = results[name].usage
            if usage is not None:
                self.events.emit("agent_usage", t, name, usage)
            result = self._validate(self.slots[name], results[name], queued)
            records += [Call(t, name, c["i"], c["fn"], c["req"], c["res"])
                        for c in hosts[name].calls]
            records.append(self._agent_record(t, name, result, hosts[name].counters))
            if result.fault is not None:
                report.faults[name] = result.fault
            report.messages += len(result.outbox)
        with self._warn_lock:
            warnings, self._warnings = self._warnings, []
        records += [EngineWarning(t, w) for w in warnings]
        records.append(Commit(t))
        positions = self._commit(records, t)
        now = time.monotonic()
        self.events.committed_at(t, now)
        if self.events.active:  # a subscriber that comes later catches up from the journal
            self.events.publish([e for r, (i, o) in zip(records, positions, strict=True)
                                 for e in committed_events(r, i, o, time=now)])
        self._raise_for_fail(t, report)
        return report

    def _run_agents(self, t: int, selected: list[str], inboxes: Mapping[str, list[Any]],
                    ) -> tuple[dict[str, StepResult], dict[str, _HostView]]:
        results: dict[str, StepResult] = {}
        hosts: dict[str, _HostView] = {}
        for start in range(0, len(selected), self.concurrency):
            wave = selected[start:start + self.concurrency]
            counters = {n: AgentCounters(self.state.agents[n].infer, self.state.agents[n].tokens)
                        for n in wave}
            sh = StepHost(
                seed=self.seed, step=t, agents=wave, engine=self.engine,
                max_batch=self.max_batch,
                capabilities={n: self.slots[n].capabilities for n in wave},
                limits={n: self.slots[n].limits for n in wave}, counters=counters,
                events=self.events,
                infer_source=self._infer_source(t) if self._infer_source else None)
            watches: dict[str, tuple[StepWatch, float]] = {}
            futures: dict[str, concurrent.futures.Future[StepResult | None]] = {}
            for n in wave:
                executor = self._executor(n)
                timeout_s = executor.timeout_s if isinstance(executor, PythonAgent) else None
                if isinstance(executor, PythonAgent) and timeout_s is not None:
                    watch = StepWatch(started=False)
                    watches[n] = (watch, timeout_s)
                    futures[n] = self._pool.submit(self._run_watched, executor, watch, sh, n, t,
                                                   inboxes[n])
                else:
                    futures[n] = self._pool.submit(self._run_one, sh, n, t, inboxes[n])
            for n in wave:
                outcome = self._await(watches[n], sh, n) if n in watches else futures[n].result()
                assert outcome is not None  # only bounded steps return None, through a watch
                results[n] = outcome
                hosts[n] = _HostView(sh.hosts[n].calls, counters[n])
            if sh.engine_error is not None:
                raise sh.engine_error
        return results, hosts

    def _executor(self, name: str) -> Executor:
        executor = self.slots[name].executor
        return self._wrap(executor) if self._wrap else executor

    def _run_watched(self, agent: PythonAgent, watch: StepWatch, sh: StepHost, name: str,
                     t: int, inbox: list[Any]) -> None:
        """A bounded Python step, in this pool thread; the scheduler waits on ``watch``."""
        request = StepRequest(name, t, self.state.agents[name].state, tuple(inbox))
        try:
            agent.step_watched(request, sh.hosts[name], watch)
        finally:
            sh.finished(name)

    def _await(self, bounded: tuple[StepWatch, float], sh: StepHost, name: str) -> StepResult:
        """The bounded step's result, or its ``timeout`` fault once it used its time (its
        thread is then abandoned: a new pool replaces the one it holds)."""
        watch, timeout_s = bounded
        if not watch.wait(timeout_s):
            sh.finished(name)  # the barrier must not wait for it
            stuck, self._pool = self._pool, concurrent.futures.ThreadPoolExecutor(
                max_workers=self._pool_size, thread_name_prefix="workbench-agent")
            stuck.shutdown(wait=False)
            return StepResult(state=None, fault=timeout_fault(timeout_s))
        if watch.error is not None:
            if isinstance(watch.error, Exception):  # an executor bug must not take the run down
                return _fault("fault", _describe(watch.error))
            raise watch.error
        assert watch.result is not None
        return watch.result

    def _run_one(self, sh: StepHost, name: str, t: int, inbox: list[Any]) -> StepResult:
        executor = self._executor(name)
        request = StepRequest(name, t, self.state.agents[name].state, tuple(inbox))
        try:
            return executor.step(request, sh.hosts[name])
        except Exception as exc:  # an executor bug must not take the run down
            return _fault("fault", _describe(exc))
        finally:
            sh.finished(name)

    def _validate(self, slot: AgentSlot, result: StepResult,
                  queued: collections.Counter[str]) -> StepResult:
        """Enforce JSON, size, message, queue and channel rules uniformly for every executor.
        ``queued`` counts the messages waiting per recipient; accepted messages add to it."""
        if result.fault is not None:
            return result
        result = self._check_output(slot, result)
        if result.fault is not None:
            return result
        adding = collections.Counter(m.to for m in result.outbox)
        for to, n in sorted(adding.items()):
            capacity = self.slots[to].limits.max_queued
            if queued[to] + n > capacity:
                return _limit("max_queued", queued[to] + n, capacity,
                              f"{to!r} already has {queued[to]} messages waiting (its "
                              f"max_queued is {capacity}); wait for it to catch up", to=to)
        queued.update(adding)
        return result

    def _check_output(self, slot: AgentSlot, result: StepResult) -> StepResult:
        """The result with its state and payloads in canonical JSON form (as the journal
        will hold them), or a fault."""
        limits = slot.limits
        try:
            state = _canonical.dumps(result.state)
            payloads = [_canonical.dumps(m.payload) for m in result.outbox]
        except (TypeError, ValueError) as exc:
            return _fault("malformed_output", _not_json(result, exc))
        state_bytes, out_bytes = len(state), sum(len(p) for p in payloads)
        if state_bytes > limits.max_state_bytes:
            return _limit("max_state_bytes", state_bytes, limits.max_state_bytes,
                          f"state is {state_bytes} bytes, over the limit of "
                          f"{limits.max_state_bytes}")
        if len(result.outbox) > limits.max_messages:
            return _limit("max_messages", len(result.outbox), limits.max_messages,
                          f"sent {len(result.outbox)} messages, over the limit of "
                          f"{limits.max_messages}")
        if out_bytes > limits.max_output_bytes:
            return _limit("max_output_bytes", out_bytes, limits.max_output_bytes,
                          f"messages total {out_bytes} bytes, over the limit of "
                          f"{limits.max_output_bytes}")
        for m in result.outbox:
            if m.to not in self.slots:
                return _fault("malformed_output", f"sent a message to unknown agent {m.to!r}")
            if (slot.name, m.to) not in self.channels:
                return _fault("malformed_output", f"sent a message to {m.to!r} without a "
                              f"channel; connect them with run.connect({slot.name!r}, {m.to!r})")
        outbox = tuple(Outgoing(m.to, _canonical.loads(p))
                       for m, p in zip(result.outbox, payloads, strict=True))
        return StepResult(_canonical.loads(state), outbox, result.status)

    def _agent_record(self, t: int, name: str, result: StepResult,
                      counters: AgentCounters) -> AgentResult:
        agent = self.state.agents[name]
        slot = self.slots[name]
        ctr = (counters.infer_index, counters.tokens_used)
        if result.fault is not None:
            restart = slot.on_fault == "restart"
            return AgentResult(t, name, _fault_json(result.fault),
                               slot.initial_state if restart else agent.state,
                               "ready" if restart else "faulted", (), ctr)
        # _validate already made the state and payloads canonical
        out = tuple(OutMessage(m.to, agent.seq + i, m.payload)
                    for i, m in enumerate(result.outbox))
        return AgentResult(t, name, None, result.state, result.status, out, ctr)

    def _commit(self, records: list[Record], t: int) -> list[tuple[int, int]]:
        """Write the step's records in one go and fold them into the state; returns each
        record's (journal index, byte offset)."""
        try:
            for r in records:
                self.sink.stage(r)
            positions = self.sink.flush()
        except BaseException as exc:
            self.sink.discard_staged()
            self._abandoned(t, exc)
            raise
        for r in records:
            apply(self.state, r, self.max_messages)
        return positions

    def _abandoned(self, t: int, error: BaseException) -> None:
        """Step ``t`` is thrown away (nothing of it is committed): say so, live."""
        self.events.emit("step_abandoned", t, None, {"reason": _describe(error)})

    def _raise_for_fail(self, t: int, report: StepReport) -> None:
        for name, fault in report.faults.items():
            if self.slots[name].on_fault == "fail":
                raise fault_error(name, t, fault)


@dataclass
class _HostView:
    calls: list[dict[str, JSON]]
    counters: AgentCounters


def _not_json(result: StepResult, error: BaseException) -> str:
    """Where in a step's output a value is not JSON (the state, or outbox[i].payload)."""
    values = [(result.state, "state")] + [(m.payload, f"outbox[{i}].payload")
                                           for i, m in enumerate(result.outbox)]
    for value, where in values:
        try:
            _canonical.dumps(value)
        except (TypeError, ValueError) as exc:
            return f"{not_json(value, where, exc)}; a step's state and payloads are plain JSON"
    return f"the output is not plain JSON ({error})"


def _limit(name: str, value: int, maximum: int, detail: str, **extra: JSON) -> StepResult:
    return StepResult(None, fault=limit_fault(name, value, maximum, detail, **extra))


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _fault(kind: str, detail: str, data: Mapping[str, JSON] | None = None) -> StepResult:
    return StepResult(None, fault=Fault(kind, detail, dict(data or {})))


def _fault_json(fault: Fault) -> dict[str, JSON]:
    """The fault as it is journaled: canonical JSON, whatever an executor put in it, and a
    detail of at most MAX_FAULT_DETAIL characters (so the record always fits the journal)."""
    try:
        data: JSON = _canonical.check_json(dict(fault.data))
    except (TypeError, ValueError):
        data = {"unjournalable": journal_text(repr(dict(fault.data)))[:1000]}
    detail = journal_text(str(fault.detail))
    if len(detail) > MAX_FAULT_DETAIL:
        detail = detail[:MAX_FAULT_DETAIL] + f"... [{len(detail) - MAX_FAULT_DETAIL} chars cut]"
    return {"kind": journal_text(str(fault.kind)), "detail": detail, "data": data}


def fault_error(agent: str, step: int, fault: Fault) -> AgentFault:
    """The exception matching a journaled fault."""
    if fault.kind == "crashed":
        signal = fault.data.get("signal")
        return AgentCrashed(agent, step, signal if isinstance(signal, int) else None,
                            fault.detail)
    return _FAULT_ERRORS.get(fault.kind, AgentFault)(agent, step, fault.detail)
