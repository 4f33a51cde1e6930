"""The Run: a team of agents, its channels, its journal, and how it is driven.

``run.step()`` / ``run.run(...)`` block; ``run.start(...)`` drives the same steps from a
background thread so a notebook stays free for widgets, with ``pause()``/``resume()``/
``wait()`` taking effect at step boundaries. Either way the journal is the same bytes.
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from workbench import _canonical
from workbench._agents import (
    is_wasm_source,
    make_executor,
    parse_bytes,
    stored_module,
    wasm_bytes,
)
from workbench._background import BackgroundDriver, RunSummary
from workbench._engine_owner import SharedEngine
from workbench._events import (
    Event,
    EventBus,
    Rewound,
    RunFinished,
    Subscription,
    committed_events,
    events_from_journal,
)
from workbench._journal import (
    DEFAULT_MAX_RECORD_BYTES,
    Journal,
    JournalWriter,
    read_journal,
)
from workbench._journal_lock import JournalClaim, claim
from workbench._names import check_agent_name, checked_json
from workbench._occupancy import Occupancy, holding, refuse_inside_step
from workbench._policy import Policy, make_policy
from workbench._python_agent import PythonAgent
from workbench._records import (
    JOURNAL_VERSION,
    AgentSpec,
    EngineWarning,
    Record,
    RunHeader,
    Snapshot,
    UserSend,
)
from workbench._runlog import note_journal
from workbench._scheduler import AgentSlot, Scheduler, StepReport
from workbench._state import USER, RunState, apply
from workbench._timetravel import state_at
from workbench._types import (
    HOST_CALLS,
    JSON,
    Executor,
    FaultPolicy,
    InferenceBackend,
    Limits,
    Message,
)
from workbench._workers import WorkerLease
from workbench.errors import ConfigError, JournalError, JournalExists, RunBusy, RunClosed

if TYPE_CHECKING:
    from workbench._wasm._pool import WorkerPool
    from workbench._widget import RunView

DEFAULT_MAX_STEPS = 10_000
"""``run.run()`` without ``steps=`` stops after this many steps at the latest."""


class JournalHandle:
    """The run's journal file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def read(self) -> Journal:
        return read_journal(self.path)

    def __repr__(self) -> str:
        return f"<JournalHandle {self.path!r}>"


class Run:
    """A deterministic multi-agent run.

    ``seed`` keys every random value agents draw; ``policy`` is ``"round_robin"``,
    ``"parallel"`` or a :class:`~workbench.DAG`; ``model`` names the model for ``infer``
    (a name such as ``"smollm2-135m-instruct"``, a folder, or an engine object); ``journal``
    is the journal file (default: a new folder under ``./runs``), which must not exist unless
    ``overwrite=True``, and which the run locks until ``close()``; ``workers`` sizes the
    run's own WebAssembly worker pool, started with its first WebAssembly agent and closed by
    ``close()`` (None: one process per core; ``0`` runs modules in-process), or is a
    :class:`~workbench.WorkerPool` to share, which the run never closes; a fork shares its
    parent's. ``concurrency`` bounds the agents running at once, ``max_batch`` the inference
    batch; both are journaled.
    """

    def __init__(self, seed: int = 0, policy: str | Policy = "round_robin", *,
                 model: str | Path | InferenceBackend | Any | None = None,
                 journal: str | os.PathLike[str] | None = None,
                 workers: int | WorkerPool | None = None, max_batch: int = 8,
                 concurrency: int = 64,
                 engine_options: Mapping[str, Any] | None = None, overwrite: bool = False,
                 _parent: Mapping[str, JSON] | None = None) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"seed must be an int, got {seed!r}")
        if journal is not None and not overwrite and os.path.lexists(journal):
            raise JournalExists(str(journal))  # checked again, atomically, when claimed
        self._overwrite = overwrite
        self._claim: JournalClaim | None = None  # the journal's lock, from the first send/step
        self.seed = seed
        self.policy = make_policy(policy)
        self._model = model
        self._engine_options = dict(engine_options or {})
        self._engine: InferenceBackend | None = None
        self._workers = workers
        self._pools = WorkerLease(workers)  # the worker pool, owned or given (see _workers)
        self.max_batch = max_batch
        self.concurrency = concurrency
        self._slots: list[AgentSlot] = []
        self._channels: set[tuple[str, str]] = set()
        self._parent = _parent
        self._journal_file = str(journal) if journal is not None else None  # see _journal_path
        self._writer: JournalWriter | None = None
        self._scheduler: Scheduler | None = None
        self.events = EventBus()
        self._lock = threading.RLock()
        self._occupancy = Occupancy()  # who is stepping it now (RunBusy for anyone else)
        self._bg: BackgroundDriver | None = None
        self._closed = False
        self._wrap: Callable[[Any], Any] | None = None  # testing hook (timing jitter)
        self._early_warnings: list[dict[str, JSON]] = []  # engine warnings before the header
        self._owned: list[Executor] = []  # executors this run built and so closes
        self._loaded: SharedEngine | None = None  # an engine this run (or its parent) loaded
        self._view: RunView | None = None  # see view()

    @property
    def _journal_path(self) -> str:
        """The journal file. A default one (a new folder under ./runs) is reserved on first
        use, so a run used only for ``run.engine.generate`` leaves no empty folder."""
        if self._journal_file is None:
            self._journal_file = _new_run_path(self.seed)
        return self._journal_file

    # -- building the team ---------------------------------------------------------------

    def add_agent(self, name: str, agent: Any, *, state: JSON = None,
                  capabilities: Sequence[str] | None = None, limits: Limits | None = None,
                  fuel: int | None = None, memory: int | str | None = None,
                  on_fault: FaultPolicy = "continue", sandbox: bool = False) -> None:
        """Add an agent: a step function, a ``.wasm``/``.wat`` path, wasm bytes or an Executor.

        ``capabilities`` defaults to every host call; ``fuel``/``memory`` override
        ``limits`` for WebAssembly agents. ``sandbox=True`` runs a step function (or a class
        with a ``step`` method) as WebAssembly instead of in the kernel: its source, and the
        plain names it uses, are captured (docs/python-agents.md). Raises ConfigError (bad
        name, duplicate, run already started, a function that cannot be captured) and
        InvalidModule/CapabilityError (bad module).
        """
        self._check_mutable("add an agent")
        check_agent_name(name)  # the rules: workbench/_names.py, README
        if any(s.name == name for s in self._slots):
            raise ConfigError(f"an agent named {name!r} already exists")
        caps = tuple(HOST_CALLS if capabilities is None else capabilities)
        unknown = sorted(set(caps) - set(HOST_CALLS))
        if unknown:
            raise ConfigError(f"unknown capabilities {unknown}; choose from {list(HOST_CALLS)}")
        lim = limits or Limits()
        if fuel is not None or memory is not None:
            from dataclasses import replace

            lim = replace(lim, fuel=lim.fuel if fuel is None else fuel,
                          memory_bytes=lim.memory_bytes if memory is None else parse_bytes(memory))
        if on_fault not in ("fail", "continue", "restart"):
            raise ConfigError("on_fault must be 'fail', 'continue' or 'restart'")
        _check_fits_journal(lim)
        if sandbox and not is_wasm_source(agent):
            from workbench._pysandbox import capture

            agent = capture(agent, name).to_bytes()  # the package: sandboxed like a module
        module = wasm_bytes(agent) if is_wasm_source(agent) else None  # read/assemble once
        executor = make_executor(name, agent if module is None else module, limits=lim,
                                 capabilities=caps, workers=self._pools)
        if module is not None:
            self._owned.append(executor)
            self._keep_module(module)
        state = checked_json(state, "state", f"add_agent({name!r}, state=...)")
        self._slots.append(AgentSlot(name, executor, state, caps, lim,
                                     on_fault))

    def connect(self, sender: str, receiver: str, *, both: bool = False) -> None:
        """Open a channel so ``sender`` may message ``receiver`` (and back if ``both``)."""
        self._check_mutable("connect agents")
        names = {s.name for s in self._slots}
        for n in (sender, receiver):
            if n not in names:
                raise ConfigError(f"no agent named {n!r}; add it with run.add_agent first")
        self._channels.add((sender, receiver))
        if both:
            self._channels.add((receiver, sender))

    # -- driving -------------------------------------------------------------------------

    @holding("send")
    def send(self, to: str, payload: JSON) -> None:
        """Queue a message from the user; delivered at the next step."""
        self._check_idle("send")
        sched = self._ensure_started()
        if to not in sched.slots:
            raise ConfigError(f"no agent named {to!r}")
        state = sched.state
        capacity = sched.slots[to].limits.max_queued
        waiting = sum(1 for m in state.pending if m.to == to)
        if waiting >= capacity:
            raise ConfigError(f"{to!r} already has {waiting} messages waiting (its max_queued "
                              f"is {capacity}); step the run so it can catch up")
        payload = checked_json(payload, "payload", f"run.send({to!r}, payload)")
        msg = Message(USER, state.user_seq, state.step - 1, to, payload)
        record = UserSend.of(msg)
        self._write(record)
        apply(state, record, sched.max_messages)

    @holding("step")
    def step(self) -> StepReport | None:
        """Run one step; None if no agent could run. See Scheduler.step for errors."""
        self._check_idle("step")
        return self._step()

    @holding("run")
    def run(self, steps: int | None = None, *,
            until: Callable[[Run], bool] | None = None, progress: bool = False) -> RunSummary:
        """Step until no agent can run, ``steps`` steps ran, or ``until(run)`` is true
        (checked after each step). Without ``steps``, stops after DEFAULT_MAX_STEPS.
        ``progress=True`` shows a progress bar."""
        self._check_idle("run")
        try:
            if not progress:
                return self._drive(steps, until, None)
            from tqdm.auto import tqdm

            with tqdm(total=steps, unit="step", desc="run") as bar:
                sub = self.subscribe(lambda e: bar.update(1), kinds=("step_committed",))
                try:
                    return self._drive(steps, until, None)
                finally:
                    sub.flush(5)
                    sub.close()
        finally:
            self._settle_view()

    @holding("until")
    def until(self, predicate: Callable[[Run], bool], *, max_steps: int = DEFAULT_MAX_STEPS,
              ) -> RunSummary:
        """Step until ``predicate(run)`` is true (or no agent can run, or ``max_steps``).
        A predicate that already holds runs no step."""
        self._check_idle("run")
        if predicate(self):
            return RunSummary(0, "until", self.step_index)
        return self.run(max_steps, until=predicate)

    def start(self, steps: int | None = None, *,
              until: Callable[[Run], bool] | None = None) -> None:
        """Drive the run from a background thread; returns at once."""
        self._occupancy.check("start")
        self._check_idle("start")
        self._ensure_started()
        self._bg = BackgroundDriver(lambda bg: self._drive(steps, until, bg))

    def pause(self, timeout: float | None = 30.0) -> RunSummary | None:
        """Stop the background driver at the next step boundary and wait for it; returns
        None. If the driver finished instead (its last step ended first), the run is idle and
        this returns its RunSummary (or raises its error), as ``wait()`` would. TimeoutError
        if the current step does not end within ``timeout`` seconds."""
        refuse_inside_step("pause", self.agents)
        if self._bg is not None:
            self._bg.pause(timeout)
            if self._bg.finished:
                return self.wait()
        return None

    def resume(self) -> None:
        """Continue a paused background driver."""
        if self._bg is not None:
            self._bg.resume()

    def wait(self, timeout: float | None = None) -> RunSummary | None:
        """Wait for the background driver to finish; re-raises its error. None on timeout.
        Once it has finished (with a summary or an error) the run is idle again."""
        refuse_inside_step("wait", self.agents)
        if self._bg is None:
            return None
        bg = self._bg
        try:
            return bg.wait(timeout)
        finally:
            if bg.collected:  # its summary or error was handed out just now
                self._bg = None
            self._settle_view()

    @property
    def running(self) -> bool:
        """True while a background driver is stepping (not paused)."""
        return self._bg is not None and self._bg.active

    @property
    def activity(self) -> str:
        """What the run is doing: "running" (a background driver steps it), "pausing"
        (asked to pause, its current step still going), "paused" (the driver waits at a
        step boundary), "finished" (the driver stopped; ``wait()`` collects its result),
        "idle" or "closed"."""
        if self._closed:
            return "closed"
        bg = self._bg
        if bg is None:
            return "idle"
        if bg.finished:
            return "finished"
        if bg.active:
            return "running"
        return "paused" if bg.parked else "pausing"

    # -- time travel -----------------------------------------------------------------------

    @holding("rewind")
    def rewind(self, step: int) -> None:
        """Restore the run to the end of ``step`` (-1: before the first step), cutting the
        journal there. Messages sent after that step are gone too. A fork holds only the
        steps after its fork point (-1 restores that point); ConfigError for earlier ones."""
        self._check_idle("rewind")
        sched = self._ensure_started()
        journal = read_journal(self._journal_path)
        offset, state = self._state_at(journal, step)
        count = bisect.bisect_left(journal.offsets, offset)
        self._writer_checked().truncate(offset, count)
        sched.state.__dict__.update(state.__dict__)
        self.events.forget_after(step)
        self.events.control(Rewound(step=step, index=count, offset=offset,
                                    time=time.monotonic()))

    @holding("fork")
    def fork(self, *, at: int | None = None, journal: str | os.PathLike[str] | None = None,
             agents: Mapping[str, Any] | None = None) -> Run:
        """A new run that continues from the end of step ``at`` (default: now) into a new
        journal recording its parent. ``agents`` replaces some agents' code."""
        self._check_idle("fork")
        if journal is not None and Path(journal).resolve() == Path(self._journal_path).resolve():
            raise ConfigError("a fork needs its own journal: pass fork(journal=...) another "
                              "path, or leave it out for a new folder under ./runs")
        sched = self._ensure_started()
        parent = read_journal(self._journal_path)
        at = sched.state.step - 1 if at is None else at
        offset, state = self._state_at(parent, at)
        data = Path(self._journal_path).read_bytes()[:offset]
        link = {"journal": self._journal_path, "step": state.step - 1,  # -1 of a fork: its start
                "sha256": hashlib.sha256(data).hexdigest()}
        child = Run(self.seed, self.policy, model=self._engine or self._model,
                    journal=journal, workers=self._workers, max_batch=self.max_batch,
                    concurrency=self.concurrency, engine_options=self._engine_options,
                    _parent=link)
        replace = dict(agents or {})
        unknown = sorted(set(replace) - {s.name for s in self._slots})
        if unknown:
            raise ConfigError(f"fork(agents=...) names unknown agents {unknown}")
        if self._loaded is not None:
            child._loaded = self._loaded.share()
        child._pools = self._pools.share()  # its own lease started nothing: dropped
        try:
            for slot in self._slots:
                code = replace.get(slot.name)
                child.add_agent(slot.name, self._kept_code(slot) if code is None else code,
                                state=slot.initial_state, capabilities=slot.capabilities,
                                limits=slot.limits, on_fault=slot.on_fault)
            child._channels = set(self._channels)
            child._ensure_started(snapshot=state)
        except BaseException:
            child.close()  # releases what it loaded and its share of the engine
            raise
        return child

    def _state_at(self, journal: Journal, step: int) -> tuple[int, RunState]:
        """(byte offset just past step's commit, the state then). ConfigError for a step
        this run does not hold."""
        sched = self._ensure_started()
        return state_at(journal, step, next_step=sched.state.step,
                        initial=RunState.initial(sched.order, {s.name: s.initial_state
                                                               for s in self._slots}),
                        max_messages=sched.max_messages, parent=self._parent)

    # -- observing -----------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Event], None], *,
                  kinds: Sequence[str] | None = None, maxsize: int = 10_000,
                  since: int | None = None) -> Subscription:
        """Receive events from a delivery thread (see workbench._events): every committed
        event (``since=0`` also those already journaled) and, while there is room, live
        ones. ``kinds`` picks kinds of :data:`workbench.EVENT_KINDS`."""
        return self.events.subscribe(callback, kinds=kinds, maxsize=maxsize, since=since)

    @property
    def journal(self) -> JournalHandle:
        return JournalHandle(self._journal_path)

    @property
    def header(self) -> RunHeader:
        """The run's header record as it is (or would be) journaled: seed, policy, agents,
        channels, and the engine's description once the engine is loaded."""
        return self._header(self._engine)

    # -- views -----------------------------------------------------------------------------

    def view(self) -> RunView:
        """The live views of this run in a notebook (agent graph, inference timeline,
        controls, inspector; see docs/views.md). One per run: calling it again returns the
        same widget."""
        if self._view is None:
            from workbench._widget import RunView

            self._view = RunView(self)
            if not self.running:  # what is journaled already, before the cell ends
                self._view.settle()
        return self._view

    def _settle_view(self) -> None:
        if self._view is not None:
            self._view.settle()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        """A notebook shows a run as its views."""
        return self.view()._repr_mimebundle_(include=include, exclude=exclude)

    @property
    def engine(self) -> InferenceBackend:
        """The inference engine (loaded on first use). Raises ConfigError without a model."""
        if self._engine is not None:
            return self._engine
        if self._model is None:
            raise ConfigError("this run has no model; pass Run(model='smollm2-135m-instruct')")
        engine: InferenceBackend
        if hasattr(self._model, "infer_batch"):
            engine = cast(InferenceBackend, self._model)  # e.g. testing.FakeEngine
        else:  # a model name, a path, or ModelFiles
            from workbench._engine._engine import Engine

            options = {"on_event": self._engine_event, **self._engine_options}
            engine = Engine(self._model, **options)
            self._loaded = SharedEngine(engine)
        self._engine = engine
        return engine

    def _engine_event(self, kind: str, data: Mapping[str, Any]) -> None:
        """Engine warnings (provider fallback ...): an event now, a journal record at the
        step's commit (the provider used is also in every infer result)."""
        record = {"what": kind, **_canonical.check_json(dict(data))}
        self.events.emit("engine_notice", self.step_index, None, {"warning": record})
        if self._scheduler is not None:
            self._scheduler.warn(record)
        else:
            self._early_warnings.append(record)

    @property
    def step_index(self) -> int:
        """The next step to run (the number of steps run so far)."""
        return self._scheduler.state.step if self._scheduler else 0

    @property
    def agents(self) -> list[str]:
        return [s.name for s in self._slots]

    def state_of(self, agent: str) -> JSON:
        """A copy of the agent's host-held state now (changing it changes nothing in the
        run). ConfigError for an unknown name."""
        slot = self._slot(agent)
        if self._scheduler is None:
            return copy.deepcopy(slot.initial_state)
        return copy.deepcopy(self._scheduler.state.agents[agent].state)

    def status_of(self, agent: str) -> str:
        """``ready``, ``idle``, ``done`` or ``faulted``. ConfigError for an unknown name."""
        self._slot(agent)
        if self._scheduler is None:
            return "ready"
        return self._scheduler.state.agents[agent].status

    def _slot(self, agent: str) -> AgentSlot:
        for slot in self._slots:
            if slot.name == agent:
                return slot
        raise ConfigError(f"no agent named {agent!r}; the agents are {self.agents}")

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop a background driver, flush the journal, release threads, the WebAssembly
        agents it loaded, and the worker pool and engine it started itself (once its forks
        are closed too; a WorkerPool passed as ``workers`` or an engine object passed as
        ``model`` stays the caller's). Idempotent. RunBusy from
        inside an agent's step, or while another thread steps the run in the foreground."""
        if self._closed:
            return
        refuse_inside_step("close the run", self.agents)
        if self._bg is None:
            self._occupancy.check("close the run")
        if self._bg is not None:
            self._bg.stop()
        self._closed = True
        if self._scheduler is not None:
            self._scheduler.close()
        for executor in self._owned:
            executor.close()
        self._pools.release()  # closes the run's own pool with the last of its forks
        for slot in self._slots:  # the idle helper threads of bounded Python agents
            if isinstance(slot.executor, PythonAgent):
                slot.executor.close()
        if self._loaded is not None:
            self._loaded.release()
        if self._writer is not None:
            self._writer.close()
        if self._claim is not None:
            self._claim.release()
        self._settle_view()  # its last document, before its subscription closes
        self.events.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        step = self.step_index
        state = "closed" if self._closed else ("running" if self.running else f"at step {step}")
        return (f"<Run seed={self.seed} policy={self.policy.name} agents={self.agents} "
                f"{state} journal={self._journal_file or 'not created yet'!r}>")

    # -- internals -------------------------------------------------------------------------

    def _check_mutable(self, action: str) -> None:
        if self._closed:
            raise RunClosed()
        if self._scheduler is not None:
            raise ConfigError(f"cannot {action} after the run started; use "
                              "run.fork(agents={...}) to change the team")

    def _check_idle(self, action: str) -> None:
        """Refuse ``action`` while a background driver is stepping. A driver paused at a step
        boundary lets the caller step, send, rewind and fork (a notebook's controls); it
        goes on from wherever that leaves the run when resumed."""
        if self._closed:
            raise RunClosed()
        if self._bg is not None and not (action != "start" and self._bg.parked):
            raise RunBusy(action, *self._bg.busy_hint())

    def _writer_checked(self) -> JournalWriter:
        assert self._writer is not None
        return self._writer

    def _keep_module(self, module: bytes) -> None:
        """Store the module beside the journal so replay can find it by hash."""
        target = stored_module(self._journal_path, hashlib.sha256(module).hexdigest())
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.write_bytes(module)

    def _kept_code(self, slot: AgentSlot) -> Any:
        """What a fork is given for an agent it keeps: the stored module of a WebAssembly
        agent (so the fork has its own executor, and its own copy of the module beside its
        journal, wherever that lives), or else the executor itself (shared)."""
        ident = slot.executor.identity()
        module = stored_module(self._journal_path, ident.hash)
        if slot.executor in self._owned and module.is_file():
            return module
        return slot.executor

    def _ensure_started(self, snapshot: RunState | None = None) -> Scheduler:
        """Freeze the team, write the header, build the scheduler (first send/step)."""
        if self._scheduler is not None:
            return self._scheduler
        if not self._slots:
            raise ConfigError("add at least one agent before stepping the run")
        self.policy.validate([s.name for s in self._slots])
        self._channels |= set(self.policy.channels())
        engine = self.engine if self._model is not None else None
        header = self._header(engine)
        self._claim = claim(self._journal_path, overwrite=self._overwrite)
        try:
            self._writer = JournalWriter(self._journal_path)
        except BaseException:
            self._claim.release()
            raise
        path = self._journal_path
        note_journal(path)  # for `workbench run` (WORKBENCH_RUN_LOG); forks come here too
        self.events.catch_up = lambda start: events_from_journal(path, start=start)
        self._write(header)
        state = RunState.initial([s.name for s in self._slots],
                                 {s.name: s.initial_state for s in self._slots})
        if snapshot is not None:
            snap = snapshot.to_json()
            self._write(Snapshot(snap))
            state = RunState.from_json(state.order, snap)
        self._scheduler = Scheduler(
            seed=self.seed, policy=self.policy, slots=self._slots, channels=self._channels,
            state=state, sink=self._writer, events=self.events, engine=engine,
            max_batch=self.max_batch, concurrency=self.concurrency, wrap=self._wrap)
        for warning in self._early_warnings:
            self._write(EngineWarning(-1, warning))
        return self._scheduler

    def _write(self, record: Record) -> None:
        """Append one record outside a step, then send its committed events."""
        index, offset = self._writer_checked().append(record)
        if self.events.active:
            self.events.publish(committed_events(record, index, offset,
                                                 time=time.monotonic()))

    def _header(self, engine: InferenceBackend | None) -> RunHeader:
        agents = tuple(AgentSpec(s.name, s.executor.identity().to_json(), s.initial_state,
                                 tuple(s.capabilities), s.limits.to_json(), s.on_fault)
                       for s in self._slots)
        return RunHeader(JOURNAL_VERSION, self.seed, self.policy.to_json(), agents,
                         tuple(sorted(self._channels)),
                         engine.describe() if engine is not None else None,
                         self.max_batch, self.concurrency,
                         dict(self._parent) if self._parent else None)

    @holding("start")  # the background driver's steps (a foreground caller holds already)
    def _step(self) -> StepReport | None:
        with self._lock:
            return self._ensure_started().step()

    def _drive(self, steps: int | None, until: Callable[[Run], bool] | None,
               bg: BackgroundDriver | None) -> RunSummary:
        limit = DEFAULT_MAX_STEPS if steps is None else steps
        done = 0
        self._ensure_started()
        while done < limit:
            if bg is not None and not bg.at_boundary():
                return RunSummary(done, "stopped", self.step_index)
            if self._step() is None:
                return self._finish(RunSummary(done, "quiescent", self.step_index))
            done += 1
            if until is not None and until(self):
                return self._finish(RunSummary(done, "until", self.step_index))
        return self._finish(RunSummary(done, "steps", self.step_index))

    def _finish(self, summary: RunSummary) -> RunSummary:
        self.events.control(RunFinished(step=summary.next_step, reason=summary.reason,
                                        steps=summary.steps, time=time.monotonic()))
        return summary


_RECORD_MARGIN = 64 * 1024
"""Room in an agent's journal record for what is not its state or message payloads ..."""
_MESSAGE_MARGIN = 200
"""... plus this much per message (recipient name up to 128 characters, seq, keys)."""


def _check_fits_journal(limits: Limits) -> None:
    """ConfigError if one step's state and messages may not fit one journal record: the
    step could then never be committed (a breach of the limits instead is a fault)."""
    room = DEFAULT_MAX_RECORD_BYTES - _RECORD_MARGIN - limits.max_messages * _MESSAGE_MARGIN
    if limits.max_state_bytes + limits.max_output_bytes > room:
        raise ConfigError(f"max_state_bytes ({limits.max_state_bytes}) plus max_output_bytes "
                          f"({limits.max_output_bytes}) must be at most {room}, what one "
                          "journal record holds; lower them")


def _new_run_path(seed: int) -> str:
    """A journal path in a new folder, created here so that two runs made in the same
    second (with the same seed) never share one. Raises JournalError if it cannot be made."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{stamp}-seed{seed}"
    base.parent.mkdir(parents=True, exist_ok=True)
    path, n = base, 1
    while True:
        try:
            path.mkdir()
            return str(path / "journal.wbj")
        except FileExistsError:
            n += 1
            path = Path(f"{base}-{n}")
        except OSError as exc:
            raise JournalError(f"cannot create the run folder {str(path)!r}: {exc}; pass "
                               "Run(journal=...) with a writable path") from exc
