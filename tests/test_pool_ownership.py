"""Who owns the WebAssembly worker pool: ``Run(workers=N)`` owns one, ``Run(workers=pool)``
borrows one, and closing releases exactly what was owned (processes, threads, descriptors)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import workbench as wb
from tests.pool_agents import CAPS, counter_wasm, marked
from tests.procs import descendants
from workbench.errors import ConfigError, FrameTooLarge, RunClosed


def resources() -> dict[str, frozenset[int]]:
    """What this process holds now, by identity: open descriptors, Python threads, OS
    threads, descendant processes."""
    return {"fds": frozenset(int(fd) for fd in os.listdir("/proc/self/fd")),
            "threads": frozenset(t.ident or 0 for t in threading.enumerate()),
            "os_threads": frozenset(int(tid) for tid in os.listdir("/proc/self/task")),
            "processes": frozenset(descendants())}


def leaked(before: dict[str, frozenset[int]]) -> dict[str, frozenset[int]]:
    """What is held now that was not held at ``before``. Something an earlier test left
    behind may end meanwhile (a thread finishing its work): that is not counted either way."""
    now = resources()
    return {kind: now[kind] - held for kind, held in before.items() if now[kind] - held}


def team(journal: Path, workers: int | wb.WorkerPool | None, agents: int = 1) -> wb.Run:
    run = wb.Run(seed=2, policy="parallel", journal=journal, workers=workers)
    for i in range(agents):
        run.add_agent(f"c{i}", counter_wasm(), capabilities=CAPS, state=i)
    return run


@contextmanager
def new_processes() -> Iterator[set[int]]:
    """The processes started inside the block that are still running at its end (filled in
    on exit)."""
    before = descendants()
    started: set[int] = set()
    yield started
    started |= descendants() - before


def test_workers_is_honoured_per_run(tmp_path: Path) -> None:
    before = descendants()
    one = team(tmp_path / "one.wbj", 1, agents=0)
    assert descendants() == before  # the pool starts with the first WebAssembly agent
    one.add_agent("c0", counter_wasm(), capabilities=CAPS, state=0)
    one.add_agent("c1", counter_wasm(), capabilities=CAPS, state=1)
    three = team(tmp_path / "three.wbj", 3, agents=2)
    # each run: its own fork server and workers
    assert len(descendants() - before) == (1 + 1) + (1 + 3)
    assert one.run(2).steps == 2 and three.run(2).steps == 2
    one.close()
    assert len(descendants() - before) == 1 + 3
    three.close()
    assert descendants() == before
    with team(tmp_path / "local.wbj", 0) as local:  # in-process: no pool at all
        local.run(2)
        assert descendants() == before


def test_close_releases_the_runs_pool(tmp_path: Path) -> None:
    base = resources()
    with new_processes() as started:
        run = team(tmp_path / "j.wbj", 2, agents=3)
        run.run(3)
        run.close()
        run.close()  # idempotent
    assert started == set()
    assert leaked(base) == {}
    with pytest.raises(RunClosed):
        run.step()


def test_python_agents_start_no_pool(tmp_path: Path) -> None:
    before = descendants()
    with wb.Run(seed=1, journal=tmp_path / "j.wbj", workers=4) as run:
        run.add_agent("p", lambda state, inbox, host: {"state": state, "status": "done"},
                      state=0)
        run.run()
        assert descendants() == before


def test_a_shared_pool_survives_its_runs_and_is_closed_by_its_owner(tmp_path: Path) -> None:
    before = descendants()
    pool = wb.WorkerPool(2)
    workers = set(pool.pids())
    assert repr(pool) == "<WorkerPool open workers=2 alive=2 agents=0 restarts=0 reruns=0>"
    for name in ("a", "b"):
        with team(tmp_path / f"{name}.wbj", pool, agents=3) as run:
            run.run(2)
            assert pool.agents == 3 and "agents=3" in repr(pool)
        assert not pool.closed and pool.agents == 0  # the run unloaded its agents only
        assert set(pool.pids()) == workers
    pool.close()
    pool.close()  # idempotent
    assert repr(pool) == "<WorkerPool closed workers=2 alive=0 agents=0 restarts=0 reruns=0>"
    assert descendants() == before
    with pytest.raises(RunClosed, match="worker pool"):
        team(tmp_path / "c.wbj", pool)
    with pytest.raises(RunClosed):
        pool.pids()


def test_a_fork_shares_its_parents_pool_until_the_last_closes(tmp_path: Path) -> None:
    before = descendants()
    parent = team(tmp_path / "p" / "j.wbj", 1, agents=2)
    parent.run(2)
    running = descendants() - before
    child = parent.fork(at=0, journal=tmp_path / "f" / "j.wbj")
    assert descendants() - before == running  # no second pool
    parent.close()
    assert child.run(2).steps == 2  # the pool outlives the parent
    child.close()
    assert descendants() == before


def test_replay_closes_the_pool_it_started(tmp_path: Path) -> None:
    with team(tmp_path / "j.wbj", 0, agents=2) as run:
        run.run(3)
    before = descendants()
    assert wb.replay(tmp_path / "j.wbj", workers=2).steps == 3
    assert descendants() == before
    with wb.WorkerPool(1) as pool:
        assert wb.replay(tmp_path / "j.wbj", workers=pool).steps == 3
        assert not pool.closed and pool.agents == 0


@pytest.mark.parametrize("workers", [-1, 1.5, "2", True])
def test_workers_must_be_a_count_or_a_pool(workers: object, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="workers must be"):
        wb.Run(journal=tmp_path / "j.wbj", workers=workers)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        wb.WorkerPool(workers)  # type: ignore[arg-type]


def test_frame_size_advice_can_be_followed(tmp_path: Path) -> None:
    """A module over a pool's frame limit: the error names WorkerPool(max_frame=...), and a
    run given such a pool runs the agent."""
    big = marked(b"m" * 40_000)
    limits = wb.Limits(max_input_bytes=16_384)
    with wb.WorkerPool(1, max_frame=32_768) as small, \
            wb.Run(journal=tmp_path / "a.wbj", workers=small) as run:
        with pytest.raises(ConfigError, match=r"WorkerPool\(max_frame=\.\.\.\)"):
            run.add_agent("c", big, capabilities=CAPS, state=0)  # default max_input_bytes
        with pytest.raises(FrameTooLarge, match=r"Run\(workers=wb.WorkerPool\(max_frame="):
            run.add_agent("c", big, capabilities=CAPS, state=0, limits=limits)
    with wb.WorkerPool(1, max_frame=1 << 20) as larger, \
            wb.Run(journal=tmp_path / "b.wbj", workers=larger) as run:
        run.add_agent("c", big, capabilities=CAPS, state=0, limits=limits)
        assert run.run(2).steps == 2


def _cycle(journal: Path, workers: int | wb.WorkerPool) -> None:
    with team(journal, workers, agents=2) as run:
        assert run.run(2).steps == 2


@pytest.mark.slow
def test_create_run_close_cycles_leak_nothing(tmp_path: Path) -> None:
    """1,000 create/run/close cycles of a run with two WebAssembly agents leave no extra file
    descriptor, thread (Python's or the OS's) or process.

    The 1,000 share one WorkerPool (each run loads its agents and unloads them at close),
    and 30 more runs each start and close a pool of their own: a run-owned pool starts a
    fork server (a fresh interpreter importing wasmtime, about 0.2 s), so 1,000 of those
    would take minutes. One cycle of each kind runs first so that what is made once per
    process (imports, caches) is not counted.
    """
    _cycle(tmp_path / "warm-own.wbj", 1)
    with wb.WorkerPool(1) as warm:
        _cycle(tmp_path / "warm-shared.wbj", warm)
    base = resources()
    with wb.WorkerPool(1) as pool:
        with_pool = resources()
        started = time.perf_counter()
        for i in range(1000):
            _cycle(tmp_path / f"shared-{i}.wbj", pool)
        shared_s = (time.perf_counter() - started) / 1000
        assert leaked(with_pool) == {}
        assert pool.agents == 0 and pool.alive == 1
    assert leaked(base) == {}
    started = time.perf_counter()
    for i in range(30):
        _cycle(tmp_path / f"own-{i}.wbj", 1)
    own_s = (time.perf_counter() - started) / 30
    assert leaked(base) == {}
    counts = {kind: len(held) for kind, held in base.items()}
    print(f"\nper cycle: {shared_s * 1e3:.1f} ms with a shared pool, {own_s * 1e3:.1f} ms "
          f"with a pool of its own; nothing left over ({counts} held before and after)")
