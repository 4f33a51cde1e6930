"""Crash recovery: kill -9 of worker processes at seeded points of seeded runs.

A kill is fired from inside an agent's host call (so the agent's step is in flight, possibly
with other agents of the same worker), from a timer started in a host call (so it lands while
guest code runs, or just after), or between steps. Every step's results must equal the
uninterrupted run's, and a run's journal must be byte-identical to the uninterrupted one.
"""

from __future__ import annotations

import os
import random
import signal
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

import workbench as wb
from tests.pool_agents import CAPS, counter_wasm, drive, marked
from workbench._journal import read_journal
from workbench._types import JSON, AgentIdentity, HostCalls, StepRequest, StepResult
from workbench._wasm import _worker
from workbench._wasm._pool import PooledWasmExecutor, WorkerPool
from workbench.testing import FakeEngine

KillKind = Literal["sync", "async"]
MAX_ASYNC_DELAY_S = 0.002


@dataclass
class KillPlan:
    """Where to kill, decided by a seed. At most one kill touches a given worker's step,
    so no step crashes ``max_crashes`` (3) times: a run with kills must equal one without.

    ``calls[(agent, step)] = (kind, call index, delay)``: kill the agent's worker at that
    host call of that step; ``between[step]``: workers to kill after that step.
    """

    calls: dict[tuple[str, int], tuple[KillKind, int, float]] = field(default_factory=dict)
    between: dict[int, list[int]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.calls) + sum(len(ws) for ws in self.between.values())


def plan_kills(seed: int, steps: int, workers: Mapping[str, int]) -> KillPlan:
    """Kills on even steps only: an async kill may spill into the odd step after it."""
    rng = random.Random(seed)
    plan = KillPlan()
    for t in range(0, steps - 1, 2):
        for w in sorted(set(workers.values())):
            kind = rng.choice(["sync", "sync", "async", "between"])
            if kind == "between" and t > 0:
                plan.between.setdefault(t - 1, []).append(w)
                continue
            agent = rng.choice(sorted(a for a, aw in workers.items() if aw == w))
            plan.calls[(agent, t)] = ("async" if kind == "async" else "sync",
                                      rng.randrange(2), rng.uniform(0, MAX_ASYNC_DELAY_S))
    return plan


class Killer:
    """Carries out a KillPlan against a pool's workers."""

    def __init__(self, pool: WorkerPool, plan: KillPlan, workers: Mapping[str, int]) -> None:
        self.pool = pool
        self.plan = plan
        self.workers = workers
        self.fired = 0
        self._pending = dict(plan.calls)
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []

    def at_call(self, agent: str, step: int, index: int) -> None:
        with self._lock:
            planned = self._pending.get((agent, step))
            if planned is None or planned[1] != index:
                return
            del self._pending[(agent, step)]  # one shot: not again when the step re-runs
        kind, _, delay = planned
        pid = self.pool.pids()[self.workers[agent]]
        if kind == "sync":
            self._kill(pid)
        else:
            timer = threading.Timer(delay, self._kill, (pid,))
            self._timers.append(timer)
            timer.start()

    def after_step(self, step: int) -> None:
        for w in self.plan.between.get(step, []):
            self._kill(self.pool.pids()[w])

    def _kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)  # raises if the worker was already gone: a test bug
        with self._lock:
            self.fired += 1

    def wrap(self, agent: str, step: int, host: HostCalls) -> HostCalls:
        return KillingHost(self, agent, step, host)

    def join(self) -> None:
        for timer in self._timers:
            timer.join()


class KillingHost:
    """HostCalls that asks the Killer before every call (call index within the attempt)."""

    def __init__(self, killer: Killer, agent: str, step: int, host: HostCalls) -> None:
        self._killer = killer
        self._agent = agent
        self._step = step
        self._host = host
        self._index = 0

    def _before(self) -> None:
        self._killer.at_call(self._agent, self._step, self._index)
        self._index += 1

    def infer(self, request: Mapping[str, JSON]) -> dict[str, JSON]:
        self._before()
        return self._host.infer(request)

    def log(self, text: str) -> None:
        self._before()
        self._host.log(text)

    def random(self) -> int:
        self._before()
        return self._host.random()

    def now(self) -> int:
        self._before()
        return self._host.now()

    def restart(self) -> None:
        self._index = 0
        self._host.restart()


def _team(pool: WorkerPool, n: int, *, infer: bool = False) -> dict[str, PooledWasmExecutor]:
    caps = ("infer", *CAPS) if infer else CAPS
    return {f"a{i}": pool.executor(counter_wasm(spin=20_000 * (i % 3), infer=infer),
                                   name=f"a{i}", capabilities=caps) for i in range(n)}


def test_kill_between_steps_replaces_the_worker(tmp_path: Path) -> None:
    with WorkerPool(2, cache_dir=tmp_path) as pool:
        team = _team(pool, 4)
        expected = drive(team, 4, seed=9)
        old = pool.pids()

        def kill_worker_0(t: int) -> None:
            if t == 1:
                os.kill(pool.pids()[0], signal.SIGKILL)

        assert drive(team, 4, seed=9, between=kill_worker_0) == expected
        assert pool.restarts == 1
        assert pool.pids()[0] != old[0] and pool.pids()[1] == old[1]
        assert "restarts=1" in repr(pool)


def test_a_dead_fork_server_is_started_again(tmp_path: Path) -> None:
    with WorkerPool(2, cache_dir=tmp_path) as pool:
        team = _team(pool, 4)
        expected = drive(team, 3, seed=5)
        server = pool.fork_server_pid
        assert server is not None
        os.kill(server, signal.SIGKILL)

        def kill_worker_1(t: int) -> None:
            if t == 0:
                os.kill(pool.pids()[1], signal.SIGKILL)

        assert drive(team, 3, seed=5, between=kill_worker_1) == expected
        assert pool.fork_server_pid not in (None, server)
        assert pool.restarts == 1


@pytest.fixture
def fake_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_worker, "SANDBOX", "tests.pool_fake_sandbox")


def test_agent_whose_steps_crash_the_worker_gets_crashed_faults_alone(
        tmp_path: Path, fake_sandbox: None) -> None:
    for size in (1, 2):
        with WorkerPool(size, cache_dir=tmp_path, max_crashes=3) as pool:
            team = _team(pool, 4)
            expected = drive(team, 3, seed=4)
            team["poison"] = pool.executor(marked(b"crash-every-step"), name="poison",
                                           capabilities=CAPS)
            history = drive(team, 3, seed=4)
            for t in range(3):
                _, _, fault, calls = history[t]["poison"]
                assert fault is not None and fault["kind"] == "crashed"
                assert fault["data"] == {"signal": signal.SIGABRT}
                assert "died 3 times" in fault["detail"]
                assert [c["req"] for c in calls] == ["about to crash"]  # re-runs: no new calls
                assert {n: history[t][n] for n in expected[t]} == expected[t]
            assert pool.reruns >= 3 * 2  # the poison's own, plus its neighbours' first crash


@pytest.mark.slow
def test_200_kills_at_seeded_points_never_change_a_result(tmp_path: Path) -> None:
    fired = 0
    sequence = 0
    while fired < 200:
        seed = 100 + sequence
        with WorkerPool(2, cache_dir=tmp_path) as pool:
            team = _team(pool, 6)
            workers = {name: pool.worker_of(e) for name, e in team.items()}
            expected = drive(team, 20, seed=seed)
            plan = plan_kills(seed, 20, workers)
            killer = Killer(pool, plan, workers)
            got = drive(team, 20, seed=seed, wrap=killer.wrap, between=killer.after_step)
            killer.join()
            assert killer.fired == plan.size
            assert got == expected, f"sequence {sequence} (seed {seed}) diverged"
            assert 0 < pool.restarts <= plan.size
            fired += killer.fired
        sequence += 1


class KillingExecutor:
    """An Executor around a pooled one whose host calls go through a Killer."""

    def __init__(self, inner: PooledWasmExecutor, killer: Killer | None) -> None:
        self.inner = inner
        self.killer = killer

    def identity(self) -> AgentIdentity:
        return self.inner.identity()

    def step(self, request: StepRequest, host: HostCalls) -> StepResult:
        if self.killer is not None:
            host = self.killer.wrap(request.agent, request.step, host)
        return self.inner.step(request, host)

    def close(self) -> None:
        self.inner.close()


def _journal_of_run(pool: WorkerPool, seed: int, steps: int, path: Path,
                    plan: KillPlan | None, engine: FakeEngine | None = None
                    ) -> tuple[bytes, int]:
    team = _team(pool, 6, infer=engine is not None)
    workers = {name: pool.worker_of(e) for name, e in team.items()}
    killer = Killer(pool, plan, workers) if plan is not None else None
    run = wb.Run(seed=seed, policy="parallel", journal=path, model=engine, max_batch=4)
    try:
        for name, executor in team.items():
            run.add_agent(name, KillingExecutor(executor, killer),
                          capabilities=executor.capabilities)
        for t in range(steps):
            run.step()
            if killer is not None:
                killer.after_step(t)
    finally:
        run.close()
    if killer is not None:
        killer.join()
    return path.read_bytes(), killer.fired if killer is not None else 0


def test_kills_around_inference_leave_journal_and_batches_unchanged(tmp_path: Path) -> None:
    steps, fired = 8, 0
    for seed in (21, 22, 23):
        calm_engine, engine = FakeEngine(), FakeEngine()
        with WorkerPool(2, cache_dir=tmp_path) as pool:
            clean, _ = _journal_of_run(pool, seed, steps, tmp_path / f"c{seed}.wbj", None,
                                       calm_engine)
        with WorkerPool(2, cache_dir=tmp_path) as pool:
            plan = plan_kills(seed, steps, {f"a{i}": i % 2 for i in range(6)})
            killed, n = _journal_of_run(pool, seed, steps, tmp_path / f"k{seed}.wbj", plan,
                                        engine)
        assert killed == clean
        assert engine.batches == calm_engine.batches  # no request reached the engine twice
        assert len(engine.batches) == 2 * steps
        fired += n
    assert fired >= 20


@pytest.mark.slow
def test_200_kills_leave_every_journal_equal_to_the_uninterrupted_one(tmp_path: Path) -> None:
    steps, fired, seed = 20, 0, 7
    with WorkerPool(2, cache_dir=tmp_path) as calm, WorkerPool(2, cache_dir=tmp_path) as pool:
        while fired < 200:
            clean, _ = _journal_of_run(calm, seed, steps, tmp_path / f"clean{seed}.wbj", None)
            workers = {f"a{i}": i % 2 for i in range(6)}
            plan = plan_kills(seed, steps, workers)
            path = tmp_path / f"kill{seed}.wbj"
            killed, n = _journal_of_run(pool, seed, steps, path, plan)
            assert n == plan.size > 0
            assert killed == clean, f"seed {seed}: the journal differs after {n} kills"
            commits = [r["t"] for r in read_journal(path).records if r["k"] == "commit"]
            assert commits == list(range(steps))  # every step whole, none partial
            fired += n
            seed += 1
        assert pool.restarts > 0 and calm.restarts == 0
