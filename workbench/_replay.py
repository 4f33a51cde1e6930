"""Replay: re-execute a journaled run and fail at the first divergence.

Agents run again against the journal's inputs; ``infer`` results come from the journal (no
model needed); every record the re-execution produces is compared with the journaled one.
The first difference raises :class:`~workbench.errors.NondeterminismError` naming the step,
the agent and the field. Steps run without the wall-clock backstop, and a journaled
``timeout`` fault is taken as given (see ``_TimeoutsAsGiven``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench._agents import make_executor, stored_module
from workbench._events import EventBus
from workbench._hostcalls import InferSource, UnreadableRequest
from workbench._journal import read_journal
from workbench._policy import policy_from_json
from workbench._records import (
    AgentResult,
    AgentSpec,
    Call,
    EngineWarning,
    Record,
    RunHeader,
    Snapshot,
    StepStart,
    UserSend,
    committed,
)
from workbench._scheduler import AgentSlot, Scheduler, StepReport
from workbench._state import RunState, apply
from workbench._types import (
    JSON,
    AgentIdentity,
    Executor,
    Fault,
    HostCalls,
    Limits,
    StepRequest,
    StepResult,
)
from workbench._workers import WorkerLease
from workbench.errors import AgentFault, ConfigError, JournalCorrupt, NondeterminismError

if TYPE_CHECKING:
    from workbench._wasm._pool import WorkerPool

_FIELD_ORDER = ("k", "t", "a", "run", "cursor", "inbox", "i", "fn", "req", "res", "fault",
                "status", "state", "out", "ctr")


@dataclass
class ReplayReport:
    """A replay that matched the journal."""

    path: str
    steps: int
    records: int
    changed_agents: list[str] = field(default_factory=list)  # code hash differs, output same

    def __repr__(self) -> str:
        changed = f", code changed but same output: {self.changed_agents}" \
            if self.changed_agents else ""
        return f"<ReplayReport {self.path!r}: {self.steps} steps verified{changed}>"


class _Verifier:
    """A Sink that compares each staged record with the journal's next record (as the JSON
    the journal holds, so a difference is named by its journal key)."""

    def __init__(self, records: list[Record], offsets: list[int], start: int) -> None:
        self.records = records
        self.offsets = offsets
        self.pos = start
        self._staged: list[tuple[int, int]] = []

    def stage(self, record: Record) -> None:
        while self.pos < len(self.records) and isinstance(self.records[self.pos], EngineWarning):
            self.pos += 1  # engine warnings (provider fallback) have no engine in replay
        if self.pos >= len(self.records):
            got = record.to_json()
            raise NondeterminismError(_step_of(got), got.get("a"), "record",
                                      "end of journal", got)
        if record != self.records[self.pos]:  # equal records have equal JSON, and back
            _raise_difference(self.records[self.pos].to_json(), record.to_json())
        self._staged.append((self.pos, self.offsets[self.pos]))
        self.pos += 1

    def flush(self) -> list[tuple[int, int]]:
        """Nothing is written in replay: positions are those of the journal's records."""
        staged, self._staged = self._staged, []
        return staged

    def discard_staged(self) -> None:
        """Nothing is written in replay."""
        self._staged.clear()


def replay(path: str | os.PathLike[str], *, agents: Mapping[str, Any] | None = None,
           workers: int | WorkerPool | None = 0) -> ReplayReport:
    """Re-execute the journal at ``path``; raise NondeterminismError at the first divergence.

    WebAssembly agents are loaded from the ``modules/`` folder beside the journal; Python
    agents must be passed in ``agents`` (name -> step function), which also lets you try
    changed code against a recorded run. Raises JournalCorrupt for a damaged journal and
    ConfigError when an agent's code cannot be found. ``workers`` is as in ``Run``: ``0``
    (the default) runs WebAssembly in this process, N starts a pool of N workers that is
    closed before this returns, and a WorkerPool is used and left open.
    """
    pools = WorkerLease(workers)
    try:
        return _replay(path, dict(agents or {}), pools)
    finally:
        pools.release()


def _replay(path: str | os.PathLike[str], agents: dict[str, Any], pools: WorkerLease
            ) -> ReplayReport:
    journal = read_journal(path)  # another format version: JournalVersionError (a ConfigError)
    records = committed(journal.typed)
    if not records or not isinstance(records[0], RunHeader):
        raise JournalCorrupt(str(path), 0, "the first record is not a run header")
    header = records[0]
    slots, changed = _slots(header, Path(path), agents, pools,
                            _given_timeouts(records))
    order = [s.name for s in slots]
    state = RunState.initial(order, {s.name: s.initial_state for s in slots})
    calls = _index_calls(records)
    misses: list[NondeterminismError] = []  # infer calls the journal cannot answer
    verifier = _Verifier(records, journal.offsets, 1)
    # A run without a model answered infer with an error, never from the journal: so here.
    source = (lambda t: _source(calls, t, misses)) if header.engine is not None else None
    sched = Scheduler(
        seed=header.seed, policy=policy_from_json(dict(header.policy)), slots=slots,
        channels={(a, b) for a, b in header.channels}, state=state, sink=verifier,
        events=EventBus(), engine=None, max_batch=header.max_batch,
        concurrency=header.concurrency, infer_source=source)
    steps = 0
    try:
        while verifier.pos < len(records):
            record = records[verifier.pos]
            if isinstance(record, UserSend | Snapshot | EngineWarning):
                apply(state, record, sched.max_messages)
                verifier.pos += 1
                continue
            try:
                report = _step(sched, misses)
            except AgentFault:
                # on_fault="fail": the original run raised after committing this step, and
                # the step was committed (verified) here too; the journal goes on.
                steps += 1
                continue
            if report is None:
                expected = record.agents if isinstance(record, StepStart) else None
                raise NondeterminismError(getattr(record, "step", -1), None, "run",
                                          expected, [])
            steps += 1
    finally:
        sched.close()
        for s in slots:
            s.executor.close()
    return ReplayReport(str(path), steps, len(records), changed)


def _step(sched: Scheduler, misses: list[NondeterminismError]) -> StepReport | None:
    """One replayed step. An infer call the journal has no answer for is raised inside the
    agent (which turns it into a fault); report that call, not the fault it caused."""
    try:
        report = sched.step()
    except NondeterminismError as exc:
        if misses and (exc.field, exc.agent) == ("fault", misses[0].agent):
            raise misses[0] from None
        raise
    except AgentFault:
        if misses:
            raise misses[0] from None
        raise
    if misses:  # the agent swallowed the error, and still matched the journal
        raise misses[0]
    return report


def _raise_difference(expected: Mapping[str, Any], got: Mapping[str, Any]) -> None:
    """NondeterminismError naming the first differing journal key of two records."""
    if "call" in (expected["k"], got["k"]) and expected["k"] != got["k"]:
        raise NondeterminismError(_step_of(expected), expected.get("a"), "calls",
                                  _call_of(expected), _call_of(got))
    name = _first_difference(expected, got)
    raise NondeterminismError(_step_of(expected if "t" in expected else got),
                              expected.get("a", got.get("a")), name,
                              expected.get(name), got.get(name))


def _step_of(record: Mapping[str, Any]) -> int:
    step = record.get("t", -1)
    return step if isinstance(step, int) else -1


def _call_of(record: Mapping[str, Any]) -> str:
    """How a journaled record (as JSON) reads where a host call was expected."""
    if record["k"] == "call":
        return f"host call {record['i']}: {record['fn']}"
    return "no more host calls"


def _slots(header: RunHeader, journal: Path, given: dict[str, Any], workers: WorkerLease,
           timeouts: Mapping[str, dict[int, _GivenTimeout]],
           ) -> tuple[list[AgentSlot], list[str]]:
    slots, changed = [], []
    for spec in header.agents:
        name, ident = spec.name, spec.identity
        limits = Limits(**spec.limits)
        code = given.pop(name, None)
        if code is None:
            code = _module_for(spec, journal)
        executor: Executor = make_executor(name, code, limits=limits,
                                           capabilities=spec.capabilities, workers=workers,
                                           wall_clock=False)
        if executor.identity().hash != ident["hash"]:
            changed.append(name)
        if name in timeouts:
            executor = _TimeoutsAsGiven(executor, timeouts[name])
        slots.append(AgentSlot(name, executor, spec.state, spec.capabilities, limits,
                               spec.on_fault))  # type: ignore[arg-type]
    if given:
        raise ConfigError(f"replay(agents=...) names agents not in the journal: {sorted(given)}")
    return slots, changed


# --- wall-clock timeouts: taken as given ----------------------------------------------------
#
# A step's wall-clock backstop (``Limits.timeout_s``) is not reproducible, so replay runs
# every step without it (fuel alone bounds a step, and a step that completed once completes
# again, however slow the machine) and takes each journaled ``timeout`` fault as given: the
# agent is not run at that step; the host calls it had made before the backstop fired are
# made again in their journaled order (so their records and the agent's counters match) and
# the journaled fault is returned.


@dataclass(frozen=True)
class _GivenTimeout:
    fault: Fault
    calls: list[Call]


def _given_timeouts(records: list[Record]) -> dict[str, dict[int, _GivenTimeout]]:
    """agent -> step -> the journaled timeout fault and host calls of that step."""
    calls: dict[tuple[int, str], list[Call]] = {}
    given: dict[str, dict[int, _GivenTimeout]] = {}
    for r in records:
        if isinstance(r, Call):
            calls.setdefault((r.step, r.agent), []).append(r)
        elif isinstance(r, AgentResult) and r.fault is not None \
                and r.fault.get("kind") == "timeout":
            f = r.fault
            data = f.get("data")
            given.setdefault(r.agent, {})[r.step] = _GivenTimeout(
                Fault(str(f["kind"]), str(f["detail"]), dict(data) if isinstance(data, dict)
                      else {}), calls.get((r.step, r.agent), []))
    return given


class _TimeoutsAsGiven:
    """An executor that replays the journaled timeouts of one agent instead of running it."""

    def __init__(self, inner: Executor, timeouts: Mapping[int, _GivenTimeout]) -> None:
        self._inner = inner
        self._timeouts = timeouts

    def identity(self) -> AgentIdentity:
        return self._inner.identity()

    def step(self, request: StepRequest, host: HostCalls) -> StepResult:
        given = self._timeouts.get(request.step)
        if given is None:
            return self._inner.step(request, host)
        for call in given.calls:
            _call_again(call, host)
        return StepResult(state=None, fault=given.fault)

    def close(self) -> None:
        self._inner.close()


def _call_again(call: Call, host: HostCalls) -> None:
    """Make a journaled host call again (infer is served from the journal in replay)."""
    fn, req = call.fn, call.request
    if fn == "log":
        host.log(str(req))
    elif fn == "random":
        host.random()
    elif fn == "now":
        host.now()
    elif fn == "infer":
        res = call.result
        reason = str(res.get("error")) if isinstance(res, dict) else ""
        with contextlib.suppress(ValueError):  # a refused request is refused again
            host.infer(req if isinstance(req, dict) else UnreadableRequest(reason))


def _module_for(spec: AgentSpec, journal: Path) -> Path:
    name, ident = spec.name, spec.identity
    if ident["kind"] in ("wasm", "python_sandbox"):
        module = stored_module(journal, str(ident["hash"]))
        if module.is_file():
            return module
        raise ConfigError(f"agent {name!r}: module {module.name} is missing beside the "
                          "journal; pass replay(path, agents={name: 'agent.wasm'})")
    raise ConfigError(f"agent {name!r} is a {ident['kind']} agent whose code is not stored in "
                      f"the journal; pass replay(path, agents={{{name!r}: step_function}})")


def _index_calls(records: list[Record]) -> dict[tuple[int, str, int], Call]:
    return {(r.step, r.agent, r.index): r for r in records if isinstance(r, Call)}


def _source(calls: dict[tuple[int, str, int], Call], t: int,
            misses: list[NondeterminismError]) -> InferSource:
    def serve(agent: str, i: int) -> dict[str, JSON]:
        record = calls.get((t, agent, i))
        if record is None or record.fn != "infer":
            misses.append(NondeterminismError(
                t, agent, "calls", f"no host call {i}" if record is None
                else f"host call {i}: {record.fn}", "infer"))
            raise misses[-1]
        res = record.result
        return dict(res) if isinstance(res, dict) else {}

    return serve


def _first_difference(expected: Mapping[str, Any], got: Mapping[str, Any]) -> str:
    keys = list(_FIELD_ORDER) + sorted((set(expected) | set(got)) - set(_FIELD_ORDER))
    for key in keys:
        if expected.get(key) != got.get(key):
            return key
    return "record"
